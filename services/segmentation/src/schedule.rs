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
        if let Err(err) = sweep_due(&writer).await {
            tracing::warn!(error = %err, "due sweep failed; retrying at the next tick");
        }
        if let Err(err) = recompute_due(&writer, &schedule).await {
            tracing::warn!(error = %err, "scheduled recompute failed; retrying at the next tick");
        }
        if let Err(err) = fit_due(&writer, &schedule, &mut fit_attempts).await {
            tracing::warn!(error = %err, "scheduled model fit failed; retrying at the next tick");
        }
        match writer.stale_caches().await {
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

/// Refreshes every customer whose due date has come, a batch per tenant and transaction.
pub async fn sweep_due(writer: &Writer) -> Result<usize, sqlx::Error> {
    let today = Utc::now().date_naive();
    let mut refreshed = 0;
    loop {
        let due: Vec<(String, i64)> = sqlx::query_as(
            "SELECT tenant_id, customer_id FROM features WHERE due_date <= $1 ORDER BY due_date LIMIT $2",
        )
        .bind(today)
        .bind(DUE_BATCH)
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
         WHERE b.tenant_id IS NULL OR b.compute_time < now() - $1 * interval '1 second'
            OR (b.compute_time AT TIME ZONE 'UTC')::date < (now() AT TIME ZONE 'UTC')::date",
    )
    .bind(schedule.recompute_every.as_secs_f64())
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
         WHERE m.tenant_id IS NULL OR m.fit_time < now() - $1 * interval '1 second'",
    )
    .bind(schedule.fit_every.as_secs_f64())
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
