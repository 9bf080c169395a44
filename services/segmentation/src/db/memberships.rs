//! Membership history: the one write path for entering and leaving segments (history rows and segment.* events in
//! the caller's transaction), and the history queries.

use boomerang_auth::TenantId;
use boomerang_events::{NewEvent, Outbox};
use boomerang_proto::segmentation as pb;
use boomerang_service_kit::time::to_timestamp;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::evaluate::Scoring;
use crate::domain::segments::SegmentId;

/// A customer entering or leaving a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub customer_id: i64,
    pub segment: SegmentId,
    pub entered: bool,
    pub reason: String,
}

/// Changes per segment.* event, so one event stays well under message size limits.
const CHANGES_PER_EVENT: usize = 5_000;

/// Events per insert into the outbox.
const EVENTS_PER_INSERT: usize = 20;

/// Records `changes` at `now`: closes the open rows of exits, opens rows for entries, and publishes
/// "segment.exited" and "segment.entered" events, all in the caller's transaction.
pub async fn record(
    conn: &mut PgConnection,
    outbox: &Outbox,
    tenant: &TenantId,
    changes: &[Change],
    now: DateTime<Utc>,
    names: &Scoring,
) -> Result<(), sqlx::Error> {
    let (mut entered, mut exited): (Vec<&Change>, Vec<&Change>) =
        changes.iter().partition(|c| c.entered);
    // In customer order, the order rows were written in, so the updates and inserts walk the table and its
    // indexes forward instead of jumping between pages.
    for list in [&mut entered, &mut exited] {
        list.sort_unstable_by_key(|c| (c.customer_id, c.segment));
    }
    for chunk in exited.chunks(100_000) {
        let (customers, segments, reasons) = columns(chunk);
        // One primary-key probe per exit, as long as the statistics are current (the writer refreshes them after a
        // mass change). Measured on two million rows, 14 343 exits: 0.17 s. A `customer_id = ANY($3)` condition,
        // tried as an index hint, made the planner expect more rows and scan the table instead: 0.56 s.
        sqlx::query(
            "UPDATE memberships m SET exit_time = $2, exit_reason = i.reason
             FROM unnest($3::int8[], $4::int2[], $5::text[]) AS i(customer_id, segment, reason)
             WHERE m.tenant_id = $1 AND m.segment = i.segment AND m.customer_id = i.customer_id
               AND m.exit_time IS NULL",
        )
        .bind(tenant.as_str())
        .bind(now)
        .bind(&customers)
        .bind(&segments)
        .bind(&reasons)
        .execute(&mut *conn)
        .await?;
    }
    for chunk in entered.chunks(100_000) {
        let (customers, segments, reasons) = columns(chunk);
        sqlx::query(
            "INSERT INTO memberships (tenant_id, segment, customer_id, enter_time, enter_reason)
             SELECT $1, i.segment, i.customer_id, $2, i.reason
             FROM unnest($3::int8[], $4::int2[], $5::text[]) AS i(customer_id, segment, reason)",
        )
        .bind(tenant.as_str())
        .bind(now)
        .bind(&customers)
        .bind(&segments)
        .bind(&reasons)
        .execute(&mut *conn)
        .await?;
    }
    // Written a few events at a time: a tenant's first recompute announces a million changes, and holding all their
    // payloads at once, with the copy the insert encodes, kept its peak at 935–1 016 MiB instead of 706 MiB.
    let mut events = Vec::new();
    for (kind, list) in [("segment.exited", &exited), ("segment.entered", &entered)] {
        for chunk in list.chunks(CHANGES_PER_EVENT) {
            if events.len() == EVENTS_PER_INSERT {
                outbox.publish(conn, std::mem::take(&mut events)).await?;
            }
            let payload = pb::SegmentMembershipsChanged {
                changes: chunk
                    .iter()
                    .map(|c| pb::MembershipChange {
                        segment: names.slug(c.segment).to_owned(),
                        customer_id: c.customer_id,
                        reason: c.reason.clone(),
                        change_time: Some(to_timestamp(now)),
                    })
                    .collect(),
            };
            events.push(NewEvent::new(tenant, kind, &payload));
        }
    }
    outbox.publish(conn, events).await
}

fn columns<'a>(chunk: &[&'a Change]) -> (Vec<i64>, Vec<i16>, Vec<&'a str>) {
    (
        chunk.iter().map(|c| c.customer_id).collect(),
        chunk.iter().map(|c| c.segment).collect(),
        chunk.iter().map(|c| c.reason.as_str()).collect(),
    )
}

/// Deletes every membership row of erased customers, returning the open ones (to announce their exit).
pub async fn erase(
    conn: &mut PgConnection,
    tenant: &str,
    customers: &[i64],
) -> Result<Vec<(i64, SegmentId)>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM memberships WHERE tenant_id = $1 AND customer_id = ANY($2)
         RETURNING customer_id, segment, exit_time IS NULL",
    )
    .bind(tenant)
    .bind(customers)
    .fetch_all(&mut *conn)
    .await
    .map(|rows: Vec<(i64, SegmentId, bool)>| {
        rows.into_iter()
            .filter(|(_, _, open)| *open)
            .map(|(c, s, _)| (c, s))
            .collect()
    })
}

/// The segments of a customer at `as_of` (now when `None`), from the history.
pub async fn segments_of(
    conn: &mut PgConnection,
    tenant: &str,
    customer: i64,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<SegmentId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT segment FROM memberships
         WHERE tenant_id = $1 AND customer_id = $2
           AND CASE WHEN $3::timestamptz IS NULL THEN exit_time IS NULL
                    ELSE enter_time <= $3 AND (exit_time IS NULL OR exit_time > $3) END
         ORDER BY segment",
    )
    .bind(tenant)
    .bind(customer)
    .bind(as_of)
    .fetch_all(&mut *conn)
    .await
}

/// One member in a page of a segment's members.
#[derive(Debug, sqlx::FromRow)]
pub struct Member {
    pub customer_id: i64,
    pub external_id: Option<String>,
    pub enter_time: DateTime<Utc>,
    pub enter_reason: String,
}

/// Members of `segment` at `as_of` (now when `None`) with customer ids above `after`, in id order.
pub async fn members(
    conn: &mut PgConnection,
    tenant: &str,
    segment: SegmentId,
    as_of: Option<DateTime<Utc>>,
    after: i64,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.customer_id, c.external_id, m.enter_time, m.enter_reason
         FROM memberships m
         LEFT JOIN customers c ON c.tenant_id = m.tenant_id AND c.customer_id = m.customer_id
         WHERE m.tenant_id = $1 AND m.segment = $2 AND m.customer_id > $4
           AND CASE WHEN $3::timestamptz IS NULL THEN m.exit_time IS NULL
                    ELSE m.enter_time <= $3 AND (m.exit_time IS NULL OR m.exit_time > $3) END
         ORDER BY m.customer_id
         LIMIT $5",
    )
    .bind(tenant)
    .bind(segment)
    .bind(as_of)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// A customer's whole membership history, newest first.
#[derive(Debug, sqlx::FromRow)]
pub struct Stay {
    pub segment: SegmentId,
    pub enter_time: DateTime<Utc>,
    pub enter_reason: String,
    pub exit_time: Option<DateTime<Utc>>,
    pub exit_reason: Option<String>,
}

pub async fn history(
    conn: &mut PgConnection,
    tenant: &str,
    customer: i64,
) -> Result<Vec<Stay>, sqlx::Error> {
    sqlx::query_as(
        "SELECT segment, enter_time, enter_reason, exit_time, exit_reason FROM memberships
         WHERE tenant_id = $1 AND customer_id = $2 ORDER BY enter_time DESC, segment",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_all(&mut *conn)
    .await
}

/// Member counts per segment at each of `times`.
pub async fn sizes(
    conn: &mut PgConnection,
    tenant: &str,
    times: &[DateTime<Utc>],
) -> Result<Vec<(DateTime<Utc>, SegmentId, i64)>, sqlx::Error> {
    let mut times = times.to_vec();
    times.sort_unstable();
    times.dedup();
    // One pass over the tenant's memberships, not one per time: each stay covers a run of the sorted times, found by
    // binary search (`width_bucket` counts the times at or before a moment; stored times are whole microseconds, so
    // a microsecond less makes it "before"). A stay adds one at the first time it covers and takes it off after the
    // last, and a running sum per segment gives the sizes. A year of daily sizes over a million memberships: 0.56 s,
    // against 26 s comparing every membership with every time (measured in psql).
    sqlx::query_as(
        "WITH m AS (
             SELECT segment, width_bucket(enter_time - interval '1 microsecond', $2) + 1 AS first,
                    CASE WHEN exit_time IS NULL THEN cardinality($2)
                         ELSE width_bucket(exit_time - interval '1 microsecond', $2) END AS last
             FROM memberships WHERE tenant_id = $1),
         steps AS (
             SELECT segment, k, sum(delta) AS delta
             FROM m CROSS JOIN LATERAL (VALUES (m.first, 1), (m.last + 1, -1)) AS d(k, delta)
             WHERE m.first <= m.last AND d.k <= cardinality($2)
             GROUP BY segment, k),
         sizes AS (
             SELECT s.segment, k.k,
                    sum(coalesce(steps.delta, 0)) OVER (PARTITION BY s.segment ORDER BY k.k) AS size
             FROM (SELECT DISTINCT segment FROM steps) s
                  CROSS JOIN generate_series(1, cardinality($2)) AS k(k)
                  LEFT JOIN steps ON steps.segment = s.segment AND steps.k = k.k)
         SELECT ($2::timestamptz[])[k], segment, size::int8 FROM sizes WHERE size > 0 ORDER BY k, segment",
    )
    .bind(tenant)
    .bind(&times)
    .fetch_all(&mut *conn)
    .await
}

/// Current member counts per segment.
pub async fn current_sizes(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Vec<(SegmentId, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT segment, count(*) FROM memberships WHERE tenant_id = $1 AND exit_time IS NULL GROUP BY segment",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await
}

/// How many customers were in each of `family`'s segments at `from` and in each at `to` (0: in none of them).
pub async fn transitions(
    conn: &mut PgConnection,
    tenant: &str,
    family: &[SegmentId],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(SegmentId, SegmentId, i64)>, sqlx::Error> {
    sqlx::query_as(
        "WITH a AS (SELECT customer_id, segment FROM memberships
                    WHERE tenant_id = $1 AND segment = ANY($2) AND enter_time <= $3
                      AND (exit_time IS NULL OR exit_time > $3)),
              b AS (SELECT customer_id, segment FROM memberships
                    WHERE tenant_id = $1 AND segment = ANY($2) AND enter_time <= $4
                      AND (exit_time IS NULL OR exit_time > $4))
         SELECT coalesce(a.segment, 0::int2), coalesce(b.segment, 0::int2), count(*)
         FROM a FULL JOIN b USING (customer_id)
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(tenant)
    .bind(family)
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await
}

/// Every customer's current segments (for rebuilding the cache).
pub async fn all_current(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Vec<(i64, Vec<SegmentId>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT customer_id, segments FROM features WHERE tenant_id = $1 AND segments <> '{}'",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await
}

#[cfg(test)]
mod tests {
    use boomerang_testkit::TestDb;

    use super::*;

    #[tokio::test]
    async fn sizes_count_a_stay_from_its_entry_up_to_but_not_at_its_exit() {
        let db = TestDb::new().await;
        let pool = db.pool(crate::SCHEMA);
        crate::migrate(&pool).await.unwrap();
        // Segment 1: customer 1 from 10:00 to 12:00, customer 2 from 11:00 on; segment 2 (another tenant's) too.
        sqlx::raw_sql(
            "INSERT INTO memberships (tenant_id, segment, customer_id, enter_time, enter_reason, exit_time) VALUES
                 ('t', 1, 1, '2026-01-01 10:00Z', '', '2026-01-01 12:00Z'),
                 ('t', 1, 2, '2026-01-01 11:00Z', '', NULL),
                 ('u', 2, 3, '2026-01-01 09:00Z', '', NULL);",
        )
        .execute(&pool)
        .await
        .unwrap();
        let at = |hour: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
                .unwrap()
                .and_hms_opt(hour, 0, 0)
                .unwrap()
                .and_utc()
        };
        let mut conn = pool.acquire().await.unwrap();
        // Unsorted, repeated, and on the very moments of entry and exit.
        let rows = sizes(
            &mut conn,
            "t",
            &[at(12), at(9), at(10), at(11), at(12), at(13)],
        )
        .await
        .unwrap();
        let found: Vec<(u32, SegmentId, i64)> = rows
            .into_iter()
            .map(|(t, segment, n)| (chrono::Timelike::hour(&t), segment, n))
            .collect();
        assert_eq!(found, [(10, 1, 1), (11, 1, 2), (12, 1, 1), (13, 1, 1)]);
    }
}
