//! A tenant's settings and its current RFM boundaries.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::clusters::Clusters;
use crate::domain::rfm::Boundaries;
use crate::domain::settings::{Effective, Settings};

/// The tenant's settings; the defaults when it has none. Stored settings were validated when saved; ones a later
/// release refuses are logged as an error (once per tenant and process) and the defaults used, until the tenant saves
/// valid ones.
pub async fn load(conn: &mut PgConnection, tenant: &str) -> Result<Effective, sqlx::Error> {
    let stored: Option<sqlx::types::Json<Settings>> =
        sqlx::query_scalar("SELECT settings FROM settings WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match stored {
        Some(settings) => settings.0.validate().unwrap_or_else(|errors| {
            static LOGGED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<String>>> =
                std::sync::LazyLock::new(Default::default);
            let first = LOGGED
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(tenant.to_owned());
            if first {
                tracing::error!(%tenant, ?errors, "stored settings are no longer valid; the defaults apply");
            }
            Effective::default()
        }),
        None => Effective::default(),
    })
}

pub async fn save(
    conn: &mut PgConnection,
    tenant: &str,
    settings: &Settings,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO settings (tenant_id, settings) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET settings = EXCLUDED.settings, update_time = now()",
    )
    .bind(tenant)
    .bind(sqlx::types::Json(settings))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

type BoundaryRow = (i64, Vec<i32>, Vec<i32>, Vec<i64>, DateTime<Utc>);

/// The boundaries of the last full recompute, with its time.
pub async fn boundaries(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Option<(Boundaries, DateTime<Utc>)>, sqlx::Error> {
    let row: Option<BoundaryRow> = sqlx::query_as(
        "SELECT population, recency, frequency, monetary, compute_time FROM rfm_boundaries WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(&mut *conn)
    .await?;
    // A recompute that found nobody to score stores population 0: nobody is scored until the next one.
    Ok(row
        .filter(|row| row.0 > 0)
        .and_then(|(population, r, f, m, at)| {
            let four_u32 = |v: Vec<i32>| -> Option<[u32; 4]> {
                let v: Vec<u32> = v.into_iter().map(|x| x as u32).collect();
                v.try_into().ok()
            };
            Some((
                Boundaries {
                    population: population as usize,
                    recency: four_u32(r)?,
                    frequency: four_u32(f)?,
                    monetary: m.try_into().ok()?,
                },
                at,
            ))
        }))
}

pub async fn save_boundaries(
    conn: &mut PgConnection,
    tenant: &str,
    boundaries: Option<&Boundaries>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let nobody = Boundaries {
        population: 0,
        recency: [0; 4],
        frequency: [0; 4],
        monetary: [0; 4],
    };
    let b = boundaries.unwrap_or(&nobody);
    let ints = |v: [u32; 4]| v.map(|x| x as i32).to_vec();
    sqlx::query(
        "INSERT INTO rfm_boundaries (tenant_id, population, recency, frequency, monetary, compute_time)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id) DO UPDATE SET population = EXCLUDED.population, recency = EXCLUDED.recency,
             frequency = EXCLUDED.frequency, monetary = EXCLUDED.monetary, compute_time = EXCLUDED.compute_time",
    )
    .bind(tenant)
    .bind(b.population as i64)
    .bind(ints(b.recency))
    .bind(ints(b.frequency))
    .bind(b.monetary.to_vec())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The clusters of the last full recompute, if clustering was on.
pub async fn clusters(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Option<Clusters>, sqlx::Error> {
    let stored: Option<sqlx::types::Json<Clusters>> =
        sqlx::query_scalar("SELECT model FROM clusters WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(stored.map(|c| c.0))
}

/// Stores the clusters of a recompute, or removes them when clustering is off.
pub async fn save_clusters(
    conn: &mut PgConnection,
    tenant: &str,
    clusters: Option<&Clusters>,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    match clusters {
        Some(clusters) => sqlx::query(
            "INSERT INTO clusters (tenant_id, model, compute_time) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id) DO UPDATE SET model = EXCLUDED.model, compute_time = EXCLUDED.compute_time",
        )
        .bind(tenant)
        .bind(sqlx::types::Json(clusters))
        .bind(now),
        None => sqlx::query("DELETE FROM clusters WHERE tenant_id = $1").bind(tenant),
    }
    .execute(&mut *conn)
    .await?;
    Ok(())
}
