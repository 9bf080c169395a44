//! Work driven by time rather than events: customers whose due date came (they turn dormant, overdue, leave the
//! lookback window… with no new event), periodic full recomputes that move the RFM boundaries with the
//! population (and one at the start of each UTC day), prediction model fits, and cache rebuilds.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use boomerang_auth::TenantId;
use boomerang_service_kit::Shutdown;
use chrono::Utc;

use crate::writer::Writer;

/// Customers refreshed per transaction by the due sweep.
const DUE_BATCH: i64 = 5_000;

#[derive(Debug, Clone)]
pub struct Schedule {
    /// How often due customers are looked for and caches checked.
    pub tick: Duration,
    /// Longest time between two full recomputes of a tenant.
    pub recompute_every: Duration,
    /// Longest time between two fits of a tenant's prediction models.
    pub fit_every: Duration,
    /// The tenants this replica serves (`segmentation.tenants`, a shard); empty: every tenant.
    pub tenants: Vec<String>,
}

/// Runs until shutdown.
pub async fn run(writer: Writer, schedule: Schedule, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(schedule.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // When each tenant's fit was last tried: a tenant too small to fit is retried after `fit_every`, not every tick.
    let mut fit_attempts: HashMap<String, Instant> = HashMap::new();
    loop {
        let tick = tokio::select! {
            _ = ticker.tick() => true,
            () = writer.rebuild_requested() => false,
            () = shutdown.wait() => break,
        };
        rebuild(&writer, writer.take_stale()).await;
        if !tick {
            continue;
        }
        if let Err(err) = sweep_due(&writer, &schedule.tenants).await {
            tracing::warn!(error = %err, "due sweep failed; retrying at the next tick");
        }
        if let Err(err) = recompute_due(&writer, &schedule).await {
            tracing::warn!(error = %err, "scheduled recompute failed; retrying at the next tick");
        }
        if let Err(err) = fit_due(&writer, &schedule, &mut fit_attempts).await {
            tracing::warn!(error = %err, "scheduled model fit failed; retrying at the next tick");
        }
        match writer.stale_caches(&schedule.tenants).await {
            Ok(stale) => rebuild(&writer, stale).await,
            Err(err) => tracing::debug!(error = %err, "cannot check the cache"),
        }
    }
}

async fn rebuild(writer: &Writer, tenants: Vec<String>) {
    for tenant in tenants {
        match writer.rebuild(&tenant).await {
            Ok(Some(customers)) => tracing::info!(%tenant, customers, "membership cache rebuilt"),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(%tenant, error = %err, "cache rebuild failed; retrying at the next tick");
                writer.defer_rebuild(&tenant);
            }
        }
    }
}

/// Refreshes every customer of `tenants` (empty: of every tenant) whose due date has come, a batch per tenant and
/// transaction.
pub async fn sweep_due(writer: &Writer, tenants: &[String]) -> Result<usize, sqlx::Error> {
    let today = Utc::now().date_naive();
    let mut refreshed = 0;
    loop {
        let due: Vec<(String, i64)> = sqlx::query_as(
            "SELECT tenant_id, customer_id FROM features
             WHERE due_date <= $1 AND (cardinality($3::text[]) = 0 OR tenant_id = ANY($3))
             ORDER BY due_date LIMIT $2",
        )
        .bind(today)
        .bind(DUE_BATCH)
        .bind(tenants)
        .fetch_all(&writer.pool)
        .await?;
        if due.is_empty() {
            return Ok(refreshed);
        }
        let mut by_tenant: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (tenant, customer) in due {
            by_tenant.entry(tenant).or_default().push(customer);
        }
        for (tenant, customers) in by_tenant {
            let Ok(tenant) = TenantId::parse(&tenant) else {
                continue;
            };
            writer.refresh_due(&tenant, &customers).await?;
            refreshed += customers.len();
        }
    }
}

/// Recomputes tenants whose boundaries are missing, older than the schedule allows, or from an earlier UTC day.
async fn recompute_due(
    writer: &Writer,
    schedule: &Schedule,
) -> Result<(), crate::writer::RecomputeError> {
    let tenants: Vec<String> = sqlx::query_scalar(
        "SELECT v.tenant_id FROM membership_versions v LEFT JOIN rfm_boundaries b USING (tenant_id)
         WHERE (b.tenant_id IS NULL OR b.compute_time < now() - $1 * interval '1 second'
                OR (b.compute_time AT TIME ZONE 'UTC')::date < (now() AT TIME ZONE 'UTC')::date)
           AND (cardinality($2::text[]) = 0 OR v.tenant_id = ANY($2))",
    )
    .bind(schedule.recompute_every.as_secs_f64())
    .bind(&schedule.tenants)
    .fetch_all(&writer.pool)
    .await
    .map_err(crate::writer::RecomputeError::Database)?;
    for tenant in tenants {
        let Ok(tenant) = TenantId::parse(&tenant) else {
            continue;
        };
        let stats = writer.recompute_now(&tenant).await?;
        tracing::info!(tenant = %tenant.as_str(), ?stats, "scheduled recompute");
    }
    Ok(())
}

/// Fits the prediction models of tenants that have none or an older fit than the schedule allows.
async fn fit_due(
    writer: &Writer,
    schedule: &Schedule,
    attempts: &mut HashMap<String, Instant>,
) -> Result<(), crate::predictions::FitJobError> {
    let tenants: Vec<String> = sqlx::query_scalar(
        "SELECT v.tenant_id FROM membership_versions v
         LEFT JOIN model_fits m ON m.tenant_id = v.tenant_id AND m.model = 'bgnbd'
         WHERE (m.tenant_id IS NULL OR m.fit_time < now() - $1 * interval '1 second')
           AND (cardinality($2::text[]) = 0 OR v.tenant_id = ANY($2))",
    )
    .bind(schedule.fit_every.as_secs_f64())
    .bind(&schedule.tenants)
    .fetch_all(&writer.pool)
    .await?;
    for tenant in tenants {
        if attempts
            .get(&tenant)
            .is_some_and(|at| at.elapsed() < schedule.fit_every)
        {
            continue;
        }
        attempts.insert(tenant.clone(), Instant::now());
        let Ok(id) = TenantId::parse(&tenant) else {
            continue;
        };
        let outcome = crate::predictions::fit(writer, &id).await?;
        tracing::info!(%tenant, fits = outcome.fits.len(), problems = ?outcome.problems, "scheduled model fit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use boomerang_events::Outbox;
    use boomerang_testkit::{TestDb, TestRedis, redis_url};
    use chrono::NaiveDate;
    use sqlx::PgPool;

    use super::*;
    use crate::cache::Cache;
    use crate::population::Residents;

    /// A writer over a fresh schema in which customers 1 and 2 of tenants `a` and `b` are due since yesterday.
    async fn due_customers(db: &TestDb, redis: &TestRedis) -> (PgPool, Writer) {
        let pool = db.pool(crate::SCHEMA);
        crate::migrate(&pool).await.unwrap();
        let writer = Writer::new(
            pool.clone(),
            Outbox::new(crate::SCHEMA),
            Cache::new(&redis_url(), redis.prefix()).unwrap(),
            Residents::new(0),
        );
        sqlx::raw_sql(
            "INSERT INTO features (tenant_id, customer_id, frequency, monetary, purchase_days, due_date)
             SELECT t, id, 0, 0, 0, current_date - 1 FROM unnest('{a,b}'::text[]) t, generate_series(1, 2) id;
             INSERT INTO membership_versions VALUES ('a', 1), ('b', 1);",
        )
        .execute(&pool)
        .await
        .unwrap();
        (pool, writer)
    }

    async fn rows(pool: &PgPool) -> Vec<(String, i64, Option<NaiveDate>)> {
        sqlx::query_as("SELECT tenant_id, customer_id, due_date FROM features ORDER BY 1, 2")
            .fetch_all(pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_customer_erased_after_the_sweep_listed_it_is_not_brought_back() {
        let (db, redis) = (TestDb::new().await, TestRedis::new());
        let (pool, writer) = due_customers(&db, &redis).await;
        // The sweep listed both; a's customer 2 is erased before its refresh takes the tenant's lock.
        sqlx::query("DELETE FROM features WHERE tenant_id = 'a' AND customer_id = 2")
            .execute(&pool)
            .await
            .unwrap();
        let a = TenantId::parse("a").unwrap();
        writer.refresh_due(&a, &[1, 2]).await.unwrap();
        let a_rows: Vec<_> = rows(&pool)
            .await
            .into_iter()
            .filter(|r| r.0 == "a")
            .collect();
        assert_eq!(
            a_rows,
            [("a".into(), 1, None)],
            "1 re-checked, 2 still erased"
        );
    }

    #[tokio::test]
    async fn a_replica_sweeps_only_the_tenants_of_its_shard() {
        let (db, redis) = (TestDb::new().await, TestRedis::new());
        let (pool, writer) = due_customers(&db, &redis).await;
        let yesterday = Utc::now().date_naive().pred_opt();
        assert_eq!(sweep_due(&writer, &["b".into()]).await.unwrap(), 2);
        assert_eq!(
            rows(&pool).await,
            [
                ("a".into(), 1, yesterday),
                ("a".into(), 2, yesterday),
                ("b".into(), 1, None),
                ("b".into(), 2, None)
            ],
            "a is another replica's"
        );
        assert_eq!(sweep_due(&writer, &[]).await.unwrap(), 2, "no shard: a too");
    }
}
