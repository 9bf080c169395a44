//! Names of a tenant's segments on the read path. Built-in segments and clusters have fixed names; custom
//! segments' names live in Postgres and are cached here per tenant for a few seconds. Custom ids are never reused,
//! so a cached id always names the right segment; a miss (a segment created by another replica) reloads at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::db::custom;
use crate::domain::segments::{self, SegmentId};

/// How long a tenant's cached names are trusted for slug lookups (a segment deleted and recreated elsewhere).
const FRESH_FOR: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Catalogue {
    pool: PgPool,
    tenants: Arc<Mutex<HashMap<String, Arc<Names>>>>,
}

/// One tenant's custom segment names.
struct Names {
    loaded: Instant,
    /// Every custom segment, deleted ones included (their history keeps the name).
    by_id: HashMap<SegmentId, String>,
    /// Live segments only.
    live: HashMap<String, SegmentId>,
}

impl Catalogue {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            tenants: Default::default(),
        }
    }

    /// Drops the tenant's cached names (after this process changed them).
    pub fn forget(&self, tenant: &str) {
        self.tenants.lock().expect("catalogue").remove(tenant);
    }

    fn cached(&self, tenant: &str) -> Option<Arc<Names>> {
        self.tenants.lock().expect("catalogue").get(tenant).cloned()
    }

    async fn load(&self, tenant: &str) -> Result<Arc<Names>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        let rows = custom::all(&mut conn, tenant).await?;
        let names = Arc::new(Names {
            loaded: Instant::now(),
            live: rows
                .iter()
                .filter(|r| r.delete_time.is_none())
                .map(|r| (r.slug.clone(), r.segment))
                .collect(),
            by_id: rows.into_iter().map(|r| (r.segment, r.slug)).collect(),
        });
        self.tenants
            .lock()
            .expect("catalogue")
            .insert(tenant.to_owned(), names.clone());
        Ok(names)
    }

    /// The slugs of segment ids, in order.
    pub async fn slugs(&self, tenant: &str, ids: &[SegmentId]) -> Result<Vec<String>, sqlx::Error> {
        let mut names = self.cached(tenant);
        let known = |names: &Option<Arc<Names>>, id: &SegmentId| {
            segments::fixed_slug(*id).is_some()
                || names.as_ref().is_some_and(|n| n.by_id.contains_key(id))
        };
        if !ids.iter().all(|id| known(&names, id)) {
            names = Some(self.load(tenant).await?);
        }
        Ok(ids
            .iter()
            .map(|id| {
                segments::fixed_slug(*id)
                    .map(str::to_owned)
                    .or_else(|| names.as_ref().and_then(|n| n.by_id.get(id).cloned()))
                    .unwrap_or_else(|| format!("unknown-{id}"))
            })
            .collect())
    }

    /// The id of a live segment.
    pub async fn id(&self, tenant: &str, slug: &str) -> Result<Option<SegmentId>, sqlx::Error> {
        if let Some(id) = segments::fixed_id(slug) {
            return Ok(Some(id));
        }
        let names = match self.cached(tenant) {
            Some(names) if names.loaded.elapsed() < FRESH_FOR && names.live.contains_key(slug) => {
                names
            }
            _ => self.load(tenant).await?,
        };
        Ok(names.live.get(slug).copied())
    }
}
