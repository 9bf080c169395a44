//! The one path that changes memberships. Each change, whatever drives it (ingestion's events, a due date, a
//! recompute), runs in one transaction that bumps the tenant's membership version, updates features, writes the
//! history and the segment.* events; after commit the same changes go to the cache, on top of the previous
//! version. Changes of one tenant are serialised: by the version row in Postgres, and by an in-process lock held
//! from before the transaction until the cache is written, so the cache sees them in commit order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boomerang_auth::TenantId;
use boomerang_events::Outbox;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::{Notify, OwnedMutexGuard};

use crate::cache::{Applied, Cache};
use crate::db::custom::{self, CustomRow, Definition};
use crate::db::features::{self, LoadError, Stored};
use crate::db::memberships::{self, Change};
use crate::db::{scoring, settings};
use crate::domain::clusters;
use crate::domain::evaluate::{self, Evaluation, Features, Scoring};
use crate::domain::rfm::{Boundaries, RfmValues};
use crate::domain::segments::SegmentId;
use crate::population::{self, Lent, Population, Residents, Turn};
use crate::tenant_locks::TenantLocks;

/// A customer leaving every segment for a reason other than its features: merged into another, or erased.
#[derive(Debug, Clone)]
pub struct Removal {
    pub customer_id: i64,
    pub reason: String,
    /// Erasure also deletes the customer's membership history.
    pub erase: bool,
}

/// A recompute's population, and the evaluations it stored (not yet in the population).
type ToKeep = (Arc<Population>, Vec<(i64, Stored)>);

/// Committed changes waiting to be written to the cache, holding the tenant's lock until they are.
pub struct Pending {
    tenant: String,
    version: i64,
    changes: Vec<Change>,
    /// A recompute's population and the evaluations it stored, kept as the tenant's copy once committed.
    population: Option<ToKeep>,
    /// The change rewrote much of the tenant: the tables' statistics are refreshed after it.
    mass_change: bool,
    /// A recompute's turn with the tenant's kept copy, until the copy is kept again.
    _copy_turn: Option<Turn>,
    _lock: OwnedMutexGuard<()>,
}

/// What a full recompute did.
#[derive(Debug, Clone, Default)]
pub struct RecomputeStats {
    pub scored: usize,
    pub evaluated: usize,
    pub entered: usize,
    pub exited: usize,
    /// Customers whose stored evaluation (segments, due date) was rewritten.
    pub updated: usize,
    /// Waiting for the tenant's other changes to finish before starting.
    pub wait: Duration,
    /// Customers whose features were read from Postgres: every one, or those changed since the kept copy.
    pub read: usize,
    /// Reading the customers' features.
    pub load: Duration,
    /// Boundaries and every customer's evaluation.
    pub evaluate: Duration,
    /// Writing the diff (evaluations, history, events, boundaries) and committing.
    pub write: Duration,
    /// Writing the diff to the cache (and then keeping the population as the tenant's copy).
    pub cache: Duration,
}

#[derive(Clone)]
pub struct Writer {
    pub pool: PgPool,
    pub outbox: Outbox,
    pub cache: Cache,
    pub residents: Residents,
    /// A statistics refresh is running.
    analyzing: Arc<AtomicBool>,
    locks: TenantLocks,
    stale: Arc<Mutex<HashSet<String>>>,
    wake: Arc<Notify>,
}

impl Writer {
    pub fn new(pool: PgPool, outbox: Outbox, cache: Cache, residents: Residents) -> Self {
        Self {
            pool,
            outbox,
            cache,
            residents,
            analyzing: Default::default(),
            locks: Default::default(),
            stale: Default::default(),
            wake: Default::default(),
        }
    }

    /// Waits for the tenant's lock.
    pub async fn lock(&self, tenant: &str) -> OwnedMutexGuard<()> {
        self.locks.lock(tenant).await
    }

    /// Asks the scheduler to rebuild the tenant's cache.
    pub fn request_rebuild(&self, tenant: &str) {
        if self
            .stale
            .lock()
            .expect("stale set")
            .insert(tenant.to_owned())
        {
            self.wake.notify_one();
        }
    }

    /// Keeps the tenant for the next tick's rebuild, without waking the scheduler now (after a failed rebuild).
    pub fn defer_rebuild(&self, tenant: &str) {
        self.stale
            .lock()
            .expect("stale set")
            .insert(tenant.to_owned());
    }

    /// Tenants whose cache needs a rebuild, emptied.
    pub fn take_stale(&self) -> Vec<String> {
        self.stale.lock().expect("stale set").drain().collect()
    }

    /// Wakes when a rebuild is requested.
    pub async fn rebuild_requested(&self) {
        self.wake.notified().await;
    }

    /// Refreshes `customers` (whose orders or transactions changed, or whose due date came) and applies
    /// `removals`, in `conn`'s transaction. Call [`Writer::publish`] with the result once it committed.
    pub async fn refresh(
        &self,
        conn: &mut PgConnection,
        lock: OwnedMutexGuard<()>,
        tenant: &TenantId,
        customers: &[i64],
        removals: &[Removal],
    ) -> Result<Pending, sqlx::Error> {
        let (version, _) = bump_version(conn, tenant.as_str()).await?;
        let now = change_time();
        let today = now.date_naive();
        let scoring = scoring::load(conn, tenant.as_str()).await?;
        let mut changes = remove(conn, tenant.as_str(), removals).await?;
        let removed: HashSet<i64> = removals.iter().map(|r| r.customer_id).collect();
        let mut customers: Vec<i64> = customers
            .iter()
            .copied()
            .filter(|c| !removed.contains(c))
            .collect();
        customers.sort_unstable();
        customers.dedup();
        if !customers.is_empty() {
            let stored = features::lock_stored(conn, tenant.as_str(), &customers).await?;
            let fresh = features::compute(
                conn,
                tenant.as_str(),
                &customers,
                today,
                &scoring.settings.settings,
            )
            .await?;
            let mut rows = Vec::with_capacity(fresh.len());
            for features in fresh {
                let evaluation = evaluate::evaluate(&features, today, &scoring);
                let before = stored
                    .get(&features.customer_id)
                    .cloned()
                    .unwrap_or_default();
                diff(
                    &features,
                    &before.segments,
                    &evaluation,
                    today,
                    &scoring,
                    &mut changes,
                );
                rows.push((features, Stored::of(&evaluation)));
            }
            features::store(conn, tenant.as_str(), &rows).await?;
        }
        let mut written = customers;
        written.extend(removed);
        features::log(conn, tenant.as_str(), version, &written).await?;
        memberships::record(conn, &self.outbox, tenant, &changes, now, &scoring).await?;
        Ok(Pending {
            tenant: tenant.as_str().to_owned(),
            version,
            changes,
            population: None,
            mass_change: false,
            _copy_turn: None,
            _lock: lock,
        })
    }

    /// Re-evaluates every customer of the tenant against boundaries (and clusters) taken from the whole
    /// population, writing only what changed.
    pub async fn recompute(
        &self,
        conn: &mut PgConnection,
        lock: OwnedMutexGuard<()>,
        tenant: &TenantId,
    ) -> Result<(Pending, RecomputeStats), RecomputeError> {
        let version = bump_version(conn, tenant.as_str()).await?;
        self.recompute_at(conn, lock, version, tenant, change_time())
            .await
    }

    /// The recompute, in a transaction that already moved the membership version to `version` (and may have
    /// changed a custom segment before); the feature log was last pruned to `pruned`.
    async fn recompute_at(
        &self,
        conn: &mut PgConnection,
        lock: OwnedMutexGuard<()>,
        (version, pruned): (i64, i64),
        tenant: &TenantId,
        now: DateTime<Utc>,
    ) -> Result<(Pending, RecomputeStats), RecomputeError> {
        let today = now.date_naive();
        let t = tenant.as_str();
        let scoring = scoring::load(conn, t).await?;
        let started = Instant::now();
        // Every version before this one is committed (each bumped the version row this transaction now holds).
        let copy = self.residents.turn(t).await;
        let held = copy.take(version - 1);
        let (all, read) =
            features::load_current(conn, &self.pool, t, held, (version - 1, pruned)).await?;
        let load = started.elapsed();
        let started = Instant::now();
        // Scoring a million customers is CPU work: off the async workers, split over the cores.
        let evaluated = {
            let all = all.clone();
            tokio::task::spawn_blocking(move || evaluate_all(&all, today, scoring))
                .await
                .map_err(|err| RecomputeError::Evaluation(err.to_string()))?
        };
        let evaluate = started.elapsed();
        // After a mass change (a first recompute, a rule most customers match) the copy goes before the diff is
        // written, so that the two are not in memory at once; the next recompute reads every customer again.
        let mass_change = !population::small_change(evaluated.updates.len(), all.len());
        let population = if mass_change {
            // Freeing a million customers' rows is CPU work too.
            tokio::task::spawn_blocking(move || drop(all));
            None
        } else {
            Some(all)
        };
        let started = Instant::now();
        features::store_evaluations(conn, t, &evaluated.updates, today).await?;
        let ids: Vec<i64> = evaluated.updates.iter().map(|(id, _)| *id).collect();
        features::log(conn, t, version, &ids).await?;
        features::prune_log(conn, t, version).await?;
        let changes = evaluated.changes;
        let scoring = evaluated.scoring;
        memberships::record(conn, &self.outbox, tenant, &changes, now, &scoring).await?;
        settings::save_boundaries(conn, tenant.as_str(), scoring.boundaries.as_ref(), now).await?;
        settings::save_clusters(conn, tenant.as_str(), scoring.clusters.as_ref(), now).await?;
        let stats = RecomputeStats {
            scored: evaluated.scored,
            evaluated: evaluated.evaluated,
            entered: changes.iter().filter(|c| c.entered).count(),
            exited: changes.iter().filter(|c| !c.entered).count(),
            updated: evaluated.updates.len(),
            wait: Duration::ZERO,
            read,
            load,
            evaluate,
            write: started.elapsed(),
            cache: Duration::ZERO,
        };
        Ok((
            Pending {
                tenant: tenant.as_str().to_owned(),
                version,
                changes,
                population: population.map(|all| (all, evaluated.updates)),
                mass_change,
                _copy_turn: Some(copy),
                _lock: lock,
            },
            stats,
        ))
    }

    /// Creates, changes or deletes a custom segment and re-evaluates every customer in the same transaction, so
    /// the segment's members are right from the moment it exists (and leave the moment it is deleted).
    pub async fn change_custom(
        &self,
        tenant: &TenantId,
        change: CustomChange,
    ) -> Result<(CustomRow, RecomputeStats), CustomError> {
        let lock = self.lock(tenant.as_str()).await;
        let mut tx = self.pool.begin().await?;
        let version = bump_version(&mut tx, tenant.as_str()).await?;
        let now = change_time();
        let t = tenant.as_str();
        let row = match &change {
            CustomChange::Create { slug, definition } => {
                // A retried create finds its segment first, whatever the limits say now.
                if custom::get(&mut tx, t, slug).await?.is_some() {
                    return Err(CustomError::AlreadyExists);
                }
                let (live, last_id) = custom::usage(&mut tx, t).await?;
                if live >= MAX_CUSTOM_SEGMENTS {
                    return Err(CustomError::TooMany);
                }
                if last_id == Some(SegmentId::MAX) {
                    return Err(CustomError::IdsUsedUp);
                }
                custom::insert(&mut tx, t, slug, definition, now)
                    .await?
                    .ok_or(CustomError::AlreadyExists)?
            }
            CustomChange::Update { slug, definition } => {
                custom::update(&mut tx, t, slug, definition, now)
                    .await?
                    .ok_or(CustomError::NotFound)?
            }
            CustomChange::Delete { slug } => custom::delete(&mut tx, t, slug, now)
                .await?
                .ok_or(CustomError::NotFound)?,
        };
        let (pending, stats) = self
            .recompute_at(&mut tx, lock, version, tenant, now)
            .await?;
        tx.commit().await?;
        self.publish(pending).await;
        Ok((row, stats))
    }

    /// Refreshes the customers of one tenant whose due date has come, in a transaction of its own, and writes the
    /// result to the cache. A customer erased or merged away since the sweep listed it stays gone: refreshing it
    /// would write a new, empty features row, and a rule such as `!email_marketing` would let the person enter.
    pub async fn refresh_due(
        &self,
        tenant: &TenantId,
        customers: &[i64],
    ) -> Result<usize, sqlx::Error> {
        let lock = self.lock(tenant.as_str()).await;
        let mut tx = self.pool.begin().await?;
        // Erasures and merges delete features rows under the same lock, so what is here now stays until the commit.
        let existing: Vec<i64> = sqlx::query_scalar(
            "SELECT customer_id FROM features WHERE tenant_id = $1 AND customer_id = ANY($2)",
        )
        .bind(tenant.as_str())
        .bind(customers)
        .fetch_all(&mut *tx)
        .await?;
        let pending = self.refresh(&mut tx, lock, tenant, &existing, &[]).await?;
        tx.commit().await?;
        let changed = pending.changes.len();
        self.publish(pending).await;
        Ok(changed)
    }

    /// Runs a full recompute of one tenant in a transaction of its own, and writes the result to the cache.
    pub async fn recompute_now(&self, tenant: &TenantId) -> Result<RecomputeStats, RecomputeError> {
        let started = Instant::now();
        let lock = self.lock(tenant.as_str()).await;
        let mut tx = self.pool.begin().await?;
        let wait = started.elapsed();
        let (pending, mut stats) = self.recompute(&mut tx, lock, tenant).await?;
        stats.wait = wait;
        let started = Instant::now();
        tx.commit().await?;
        stats.write += started.elapsed();
        let started = Instant::now();
        self.publish(pending).await;
        stats.cache = started.elapsed();
        Ok(stats)
    }

    /// A read-only, repeatable-read snapshot of the tenant and every customer as it sees them: the kept copy
    /// brought up to date, or a full read, which is then kept (previews, model fits). The snapshot opens once it is
    /// this caller's turn with the copy, so a wait holds no connection; the turn lasts until the population is
    /// dropped.
    pub async fn snapshot_population(
        &self,
        tenant: &str,
    ) -> Result<(Transaction<'static, Postgres>, Lent), LoadError> {
        let turn = self.residents.turn(tenant).await;
        let mut snapshot = crate::db::snapshot(&self.pool).await?;
        let state = features::log_state(&mut snapshot, tenant).await?;
        let held = turn.take(state.0);
        let (all, _) =
            features::load_current(&mut snapshot, &self.pool, tenant, held, state).await?;
        self.residents.keep(tenant, state.0, all.clone());
        Ok((snapshot, Lent::new(all, turn)))
    }

    /// Writes committed changes to the cache; on any failure the cache is marked for a rebuild. A recompute's
    /// population, with what it stored, becomes the tenant's kept copy.
    pub async fn publish(&self, pending: Pending) {
        match self
            .cache
            .apply(&pending.tenant, pending.version, &pending.changes)
            .await
        {
            Ok(Applied::Current) => {}
            Ok(Applied::Invalidated) => self.request_rebuild(&pending.tenant),
            Err(err) => {
                tracing::warn!(tenant = %pending.tenant, error = %err, "cache write failed; rebuilding it");
                // Reads must not trust the cache until it is rebuilt; if Redis is away this fails too, and the
                // version check after it comes back finds the gap.
                let _ = self.cache.invalidate(&pending.tenant).await;
                self.request_rebuild(&pending.tenant);
            }
        }
        if let Some((mut population, updates)) = pending.population {
            let kept = tokio::task::spawn_blocking(move || {
                Arc::make_mut(&mut population).set_stored(&updates);
                population
            })
            .await;
            match kept {
                Ok(population) => self
                    .residents
                    .keep(&pending.tenant, pending.version, population),
                Err(err) => tracing::warn!(error = %err, "keeping the population failed"),
            }
        }
        if pending.mass_change && !self.analyzing.swap(true, Ordering::AcqRel) {
            // Statistics taken while the tenant was small make the planner scan a whole tenant to reach a few of
            // its rows (seen in the recompute benchmark: the exits of the next day's refreshes took 0.7–0.9 s
            // instead of 0.1 s). Autovacuum gets there eventually; after a mass change, at once and in the
            // background.
            // One at a time: the tables are every tenant's, and one run serves the mass changes that meet it.
            let (pool, analyzing) = (self.pool.clone(), self.analyzing.clone());
            tokio::spawn(async move {
                if let Err(err) = sqlx::query("ANALYZE features, memberships")
                    .execute(&pool)
                    .await
                {
                    tracing::warn!(error = %err, "refreshing statistics after a mass change failed");
                }
                analyzing.store(false, Ordering::Release);
            });
        }
    }

    /// Rebuilds the tenant's cache from Postgres, unless it already holds the current version (a rebuild asked for
    /// twice, by a failed write and by the tick's check, runs once).
    pub async fn rebuild(&self, tenant: &str) -> Result<Option<usize>, RebuildError> {
        let _lock = self.lock(tenant).await;
        let mut tx = self.pool.begin().await?;
        let version: Option<i64> =
            sqlx::query_scalar("SELECT version FROM membership_versions WHERE tenant_id = $1")
                .bind(tenant)
                .fetch_optional(&mut *tx)
                .await?;
        if version.is_some() && self.cache.version(tenant).await? == version {
            return Ok(None);
        }
        let members = memberships::all_current(&mut tx, tenant).await?;
        tx.commit().await?;
        self.cache
            .rebuild(tenant, version.unwrap_or(0), &members)
            .await?;
        Ok(Some(members.len()))
    }

    /// Tenants of `tenants` (empty: every tenant) whose cache does not hold their current membership version.
    pub async fn stale_caches(&self, tenants: &[String]) -> Result<Vec<String>, RebuildError> {
        let versions: Vec<(String, i64)> = sqlx::query_as(
            "SELECT tenant_id, version FROM membership_versions
             WHERE cardinality($1::text[]) = 0 OR tenant_id = ANY($1)",
        )
        .bind(tenants)
        .fetch_all(&self.pool)
        .await?;
        let tenants: Vec<&str> = versions.iter().map(|(t, _)| t.as_str()).collect();
        let cached = self.cache.versions(&tenants).await?;
        Ok(versions
            .iter()
            .zip(cached)
            .filter(|((_, version), cached)| *cached != Some(*version))
            .map(|((tenant, _), _)| tenant.clone())
            .collect())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecomputeError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Load(#[from] features::LoadError),
    #[error("evaluation failed: {0}")]
    Evaluation(String),
}

/// Most live custom segments per tenant: each is evaluated for every customer at every change.
pub const MAX_CUSTOM_SEGMENTS: i64 = 200;

/// A change to a tenant's custom segments.
#[derive(Debug, Clone)]
pub enum CustomChange {
    Create {
        slug: String,
        definition: Definition,
    },
    Update {
        slug: String,
        definition: Definition,
    },
    Delete {
        slug: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CustomError {
    #[error("a segment with this id exists")]
    AlreadyExists,
    #[error("no such segment")]
    NotFound,
    #[error("the tenant has {MAX_CUSTOM_SEGMENTS} custom segments, the most it may have")]
    TooMany,
    /// Ids are never reused (a deleted segment keeps its history under its id), and they are 16-bit.
    #[error(
        "the tenant has created the most custom segments it may ever create ({}, deleted ones included)",
        SegmentId::MAX as i32 - crate::domain::segments::FIRST_CUSTOM as i32 + 1
    )]
    IdsUsedUp,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("recompute failed: {0}")]
    Recompute(#[from] RecomputeError),
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// The time a change of memberships is recorded at, read once the tenant's version row is held: every change
/// before it has committed by then, with an earlier time, so a customer's stays never overlap and its events come
/// in the order of their times, whatever the change waited for (another tenant's work, another replica).
fn change_time() -> DateTime<Utc> {
    Utc::now()
}

/// Moves the tenant's membership version on, holding its row until commit; returns the new version and the
/// version the feature log was last pruned to.
async fn bump_version(conn: &mut PgConnection, tenant: &str) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO membership_versions (tenant_id, version) VALUES ($1, 1)
         ON CONFLICT (tenant_id) DO UPDATE SET version = membership_versions.version + 1
         RETURNING version, log_pruned",
    )
    .bind(tenant)
    .fetch_one(&mut *conn)
    .await
}

/// Exits of removed customers; their features go, and erased customers' history too.
async fn remove(
    conn: &mut PgConnection,
    tenant: &str,
    removals: &[Removal],
) -> Result<Vec<Change>, sqlx::Error> {
    if removals.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = removals.iter().map(|r| r.customer_id).collect();
    let current: Vec<(i64, Vec<SegmentId>)> = sqlx::query_as(
        "DELETE FROM features WHERE tenant_id = $1 AND customer_id = ANY($2) RETURNING customer_id, segments",
    )
    .bind(tenant)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let erased: Vec<i64> = removals
        .iter()
        .filter(|r| r.erase)
        .map(|r| r.customer_id)
        .collect();
    if !erased.is_empty() {
        memberships::erase(conn, tenant, &erased).await?;
    }
    let reasons: HashMap<i64, &str> = removals
        .iter()
        .map(|r| (r.customer_id, r.reason.as_str()))
        .collect();
    Ok(current
        .into_iter()
        .flat_map(|(customer_id, segments)| {
            let reason = reasons
                .get(&customer_id)
                .copied()
                .unwrap_or_default()
                .to_owned();
            segments.into_iter().map(move |segment| Change {
                customer_id,
                segment,
                entered: false,
                reason: reason.clone(),
            })
        })
        .collect())
}

/// The outcome of evaluating a whole tenant.
struct Evaluated {
    /// With the new boundaries and clusters.
    scoring: Scoring,
    scored: usize,
    evaluated: usize,
    changes: Vec<Change>,
    updates: Vec<(i64, Stored)>,
}

/// One thread's share of a recompute: its changes and the new evaluations to store.
type PartDiff = (Vec<Change>, Vec<(i64, Stored)>);

/// Takes the boundaries (and clusters) from the population and evaluates every customer, in parallel over the
/// cores.
fn evaluate_all(all: &Population, today: NaiveDate, mut scoring: Scoring) -> Evaluated {
    let population: Vec<(i64, RfmValues)> = all
        .iter()
        .filter_map(|(f, _)| Some((f.customer_id, f.rfm_values(today)?)))
        .collect();
    let values: Vec<RfmValues> = population.iter().map(|(_, v)| *v).collect();
    scoring.boundaries = Boundaries::of(&values);
    drop(values);
    let settings = &scoring.settings.settings;
    scoring.clusters = (settings.clusters > 0)
        .then(|| {
            clusters::fit(
                &population,
                settings.clusters as usize,
                settings.cluster_seed,
            )
        })
        .flatten();
    let scored = population.len();
    drop(population);
    let scoring_ref = &scoring;
    let parts: Vec<PartDiff> = std::thread::scope(|scope| {
        let handles: Vec<_> = all
            .per_core()
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    let mut changes = Vec::new();
                    let mut updates = Vec::new();
                    for (features, before) in part {
                        let evaluation = evaluate::evaluate(features, today, scoring_ref);
                        if !before.matches(&evaluation) {
                            diff(
                                features,
                                &before.segments,
                                &evaluation,
                                today,
                                scoring_ref,
                                &mut changes,
                            );
                            updates.push((features.customer_id, Stored::of(&evaluation)));
                        }
                    }
                    (changes, updates)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().expect("evaluation thread"))
            .collect()
    });
    // Sized once: after a tenant's first recompute these hold a million entries each.
    let mut changes = Vec::with_capacity(parts.iter().map(|(c, _)| c.len()).sum());
    let mut updates = Vec::with_capacity(parts.iter().map(|(_, u)| u.len()).sum());
    for (c, u) in parts {
        changes.extend(c);
        updates.extend(u);
    }
    Evaluated {
        scoring,
        scored,
        evaluated: all.len(),
        changes,
        updates,
    }
}

/// The exits and entries that take a customer from `before` to `evaluation`.
fn diff(
    features: &Features,
    before: &[SegmentId],
    evaluation: &Evaluation,
    today: NaiveDate,
    scoring: &Scoring,
    changes: &mut Vec<Change>,
) {
    for segment in before.iter().filter(|s| !evaluation.segments.contains(s)) {
        changes.push(Change {
            customer_id: features.customer_id,
            segment: *segment,
            entered: false,
            reason: evaluate::exit_reason(*segment, features, evaluation, today, scoring),
        });
    }
    for segment in evaluation.segments.iter().filter(|s| !before.contains(s)) {
        changes.push(Change {
            customer_id: features.customer_id,
            segment: *segment,
            entered: true,
            reason: evaluate::reason(*segment, features, evaluation, today, scoring),
        });
    }
}
