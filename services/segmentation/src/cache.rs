//! Current membership in Redis: per customer a set of segment ids, per segment a set of customer ids, and a
//! `ready` marker holding the membership version the cache reflects.
//!
//! Every key is `{prefix}:{<tenant>}:…`; the braces make a tenant's keys one Redis Cluster slot, so the apply
//! script can touch them atomically. The marker is an integer only while the cache is complete and current: a
//! rebuild deletes it first and sets it last, and a change applied in several chunks marks it "partial" until the
//! last chunk. Each change applies only on top of the version before it; any gap (a lost write, a crash between
//! the Postgres commit and the cache write, a flush) deletes the marker, and readers fall back to Postgres until
//! the cache is rebuilt.

mod reads;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};

use self::reads::{Query, Reads};
use crate::db::memberships::Change;
use crate::domain::segments::SegmentId;

/// Commands per pipeline or script call.
const CHUNK: usize = 20_000;

#[derive(Clone)]
pub struct Cache {
    connection: ConnectionManager,
    reads: Reads,
    prefix: String,
    apply: Script,
}

/// What a change did to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The cache now reflects the new version.
    Current,
    /// The cache was not at the version before; it is marked incomplete and needs a rebuild.
    Invalidated,
}

/// Applies one chunk of a change if the marker holds KEYS[1]'s expected value ARGV[1]; then sets it to ARGV[2].
/// The rest of ARGV are (op, customer id, segment id) triples; KEYS[2..] the customer and segment keys of each.
const APPLY: &str = r"
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 0
end
local k = 2
for i = 3, #ARGV, 3 do
  if ARGV[i] == '+' then
    redis.call('SADD', KEYS[k], ARGV[i + 2])
    redis.call('SADD', KEYS[k + 1], ARGV[i + 1])
  else
    redis.call('SREM', KEYS[k], ARGV[i + 2])
    redis.call('SREM', KEYS[k + 1], ARGV[i + 1])
  end
  k = k + 2
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
";

impl Cache {
    /// A cache at `url` whose keys start with `prefix`. Connects lazily and reconnects by itself; calls fail fast
    /// while Redis is away, so readers can fall back to Postgres. Starts the task that sends concurrent reads
    /// together, so it is called inside the runtime.
    pub fn new(url: &str, prefix: &str) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            reads: Reads::start(connection.clone()),
            connection,
            prefix: prefix.to_owned(),
            apply: Script::new(APPLY),
        })
    }

    fn tag(&self, tenant: &str) -> String {
        format!("{}:{{{tenant}}}", self.prefix)
    }

    fn ready_key(&self, tenant: &str) -> String {
        format!("{}:ready", self.tag(tenant))
    }

    fn customer_key(&self, tenant: &str, customer: i64) -> String {
        format!("{}:c:{customer}", self.tag(tenant))
    }

    fn segment_key(&self, tenant: &str, segment: SegmentId) -> String {
        format!("{}:s:{segment}", self.tag(tenant))
    }

    /// The customer's current segments, or `None` when the cache is not complete.
    pub async fn customer_segments(
        &self,
        tenant: &str,
        customer: i64,
    ) -> RedisResult<Option<Vec<SegmentId>>> {
        let (ready, segments) = self.read(tenant, customer, Query::Segments).await?;
        let mut segments: Vec<SegmentId> = redis::from_redis_value(segments)?;
        segments.sort_unstable();
        Ok(complete(ready.as_deref()).then_some(segments))
    }

    /// Whether the customer is in the segment, or `None` when the cache is not complete.
    pub async fn is_member(
        &self,
        tenant: &str,
        segment: SegmentId,
        customer: i64,
    ) -> RedisResult<Option<bool>> {
        let (ready, member) = self.read(tenant, customer, Query::Member(segment)).await?;
        let member: bool = redis::from_redis_value(member)?;
        Ok(complete(ready.as_deref()).then_some(member))
    }

    /// The tenant's marker, then `query` of the customer's set, sent with the other reads of the moment.
    async fn read(&self, tenant: &str, customer: i64, query: Query) -> RedisResult<reads::Answer> {
        self.reads
            .read(
                self.ready_key(tenant),
                self.customer_key(tenant, customer),
                query,
            )
            .await
    }

    /// The version the cache reflects, `None` when it is not complete.
    pub async fn version(&self, tenant: &str) -> RedisResult<Option<i64>> {
        Ok(self.versions(&[tenant]).await?.pop().flatten())
    }

    /// The versions the cache of each tenant reflects, in order, in one pipeline.
    pub async fn versions(&self, tenants: &[&str]) -> RedisResult<Vec<Option<i64>>> {
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let mut pipe = redis::pipe();
        for tenant in tenants {
            pipe.get(self.ready_key(tenant));
        }
        let ready: Vec<Option<String>> = pipe.query_async(&mut connection).await?;
        Ok(ready
            .into_iter()
            .map(|v| v.and_then(|v| v.parse().ok()))
            .collect())
    }

    /// Applies the changes of membership version `version` on top of version `version - 1`.
    pub async fn apply(
        &self,
        tenant: &str,
        version: i64,
        changes: &[Change],
    ) -> RedisResult<Applied> {
        let mut connection = self.connection.clone();
        let partial = format!("partial:{version}");
        let previous = (version - 1).to_string();
        let chunks: Vec<&[Change]> = if changes.is_empty() {
            vec![&[]]
        } else {
            changes.chunks(CHUNK).collect()
        };
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let expect = if i == 0 {
                previous.as_str()
            } else {
                partial.as_str()
            };
            let next = if i == last {
                version.to_string()
            } else {
                partial.clone()
            };
            let mut invocation = self.apply.prepare_invoke();
            invocation.key(self.ready_key(tenant)).arg(expect).arg(next);
            for change in chunk {
                invocation
                    .key(self.customer_key(tenant, change.customer_id))
                    .key(self.segment_key(tenant, change.segment))
                    .arg(if change.entered { "+" } else { "-" })
                    .arg(change.customer_id)
                    .arg(change.segment);
            }
            let applied: i64 = invocation.invoke_async(&mut connection).await?;
            if applied == 0 {
                return Ok(Applied::Invalidated);
            }
        }
        Ok(Applied::Current)
    }

    /// Marks the tenant's cache incomplete.
    pub async fn invalidate(&self, tenant: &str) -> RedisResult<()> {
        let mut connection = self.connection.clone();
        redis::cmd("DEL")
            .arg(self.ready_key(tenant))
            .exec_async(&mut connection)
            .await
    }

    /// Replaces the tenant's cache with `members` at `version`: marks it incomplete, deletes every key, writes the
    /// sets, then marks it complete.
    pub async fn rebuild(
        &self,
        tenant: &str,
        version: i64,
        members: &[(i64, Vec<SegmentId>)],
    ) -> RedisResult<()> {
        let mut connection = self.connection.clone();
        self.invalidate(tenant).await?;
        let pattern = format!("{}:*", self.tag(tenant));
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(5_000)
                .query_async(&mut connection)
                .await?;
            if !keys.is_empty() {
                redis::cmd("UNLINK")
                    .arg(keys)
                    .exec_async(&mut connection)
                    .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut by_segment: std::collections::BTreeMap<SegmentId, Vec<i64>> = Default::default();
        for chunk in members.chunks(CHUNK) {
            let mut pipe = redis::pipe();
            for (customer, segments) in chunk {
                pipe.sadd(self.customer_key(tenant, *customer), segments)
                    .ignore();
                for segment in segments {
                    by_segment.entry(*segment).or_default().push(*customer);
                }
            }
            pipe.exec_async(&mut connection).await?;
        }
        for (segment, customers) in by_segment {
            for chunk in customers.chunks(CHUNK) {
                redis::cmd("SADD")
                    .arg(self.segment_key(tenant, segment))
                    .arg(chunk)
                    .exec_async(&mut connection)
                    .await?;
            }
        }
        redis::cmd("SET")
            .arg(self.ready_key(tenant))
            .arg(version)
            .exec_async(&mut connection)
            .await
    }
}

/// A marker value means complete only when it is a version number.
fn complete(ready: Option<&str>) -> bool {
    ready.is_some_and(|v| v.parse::<i64>().is_ok())
}

#[cfg(test)]
mod tests {
    use boomerang_testkit::{TestRedis, redis_url};
    use futures::future::join_all;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_sent_together_answer_each_for_its_own_tenant_and_customer() {
        let redis = TestRedis::new();
        let cache = Cache::new(&redis_url(), redis.prefix()).unwrap();
        let members: Vec<(i64, Vec<SegmentId>)> =
            (1..=40).map(|c| (c, vec![(c % 6) as i16, 11])).collect();
        cache.rebuild("acme", 3, &members).await.unwrap();
        // globex's sets are there but its marker is not: half built, never to be served as complete.
        cache.rebuild("globex", 5, &members).await.unwrap();
        cache.invalidate("globex").await.unwrap();
        assert_eq!(
            cache
                .versions(&["acme", "globex", "initech"])
                .await
                .unwrap(),
            [Some(3), None, None],
            "complete, half built, never built"
        );

        let reads = (1..=40i64).map(|customer| {
            let cache = cache.clone();
            async move {
                let tenant = if customer % 2 == 0 { "acme" } else { "globex" };
                let segments = cache.customer_segments(tenant, customer).await.unwrap();
                let member = cache
                    .is_member(tenant, (customer % 6) as i16, customer)
                    .await
                    .unwrap();
                let other = cache.is_member(tenant, 12, customer).await.unwrap();
                (customer, tenant, segments, member, other)
            }
        });
        for (customer, tenant, segments, member, other) in join_all(reads).await {
            if tenant == "acme" {
                let mut expected = vec![(customer % 6) as i16, 11];
                expected.sort_unstable();
                assert_eq!(segments, Some(expected), "customer {customer}");
                assert_eq!(member, Some(true), "customer {customer}");
                assert_eq!(other, Some(false), "customer {customer}");
            } else {
                assert_eq!(
                    (segments, member, other),
                    (None, None, None),
                    "customer {customer}"
                );
            }
        }
        assert_eq!(
            cache.customer_segments("acme", 999).await.unwrap(),
            Some(vec![])
        );
    }
}
