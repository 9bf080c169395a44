//! The tenant's fitted prediction models.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::bgnbd::BgNbd;
use crate::domain::gamma_gamma::GammaGamma;
use crate::domain::predictions::Models;

pub const BGNBD: &str = "bgnbd";
pub const GAMMA_GAMMA: &str = "gamma_gamma";
/// Parameter names, in the order `params` holds them.
pub const BGNBD_PARAMS: &[&str] = &["r", "alpha", "a", "b"];
pub const GAMMA_GAMMA_PARAMS: &[&str] = &["p", "q", "v"];

/// One stored fit.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FitRow {
    pub model: String,
    pub params: Vec<f64>,
    pub log_likelihood: f64,
    pub customers: i64,
    pub iterations: i32,
    pub fit_ms: i32,
    pub fit_time: DateTime<Utc>,
}

impl FitRow {
    /// Parameter names, in the order `params` holds them.
    pub fn names(&self) -> &'static [&'static str] {
        match self.model.as_str() {
            BGNBD => BGNBD_PARAMS,
            _ => GAMMA_GAMMA_PARAMS,
        }
    }
}

pub async fn all(conn: &mut PgConnection, tenant: &str) -> Result<Vec<FitRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT model, params, log_likelihood, customers, iterations, fit_ms, fit_time FROM model_fits
         WHERE tenant_id = $1 ORDER BY model",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await
}

/// The models predictions use: none without a BG/NBD fit.
pub fn models(fits: &[FitRow]) -> Option<Models> {
    let params = |name: &str, n: usize| {
        fits.iter()
            .find(|f| f.model == name)
            .map(|f| f.params.clone())
            .filter(|p| p.len() == n)
    };
    let bg = params(BGNBD, 4)?;
    Some(Models {
        bgnbd: BgNbd {
            r: bg[0],
            alpha: bg[1],
            a: bg[2],
            b: bg[3],
        },
        gamma_gamma: params(GAMMA_GAMMA, 3).map(|g| GammaGamma {
            p: g[0],
            q: g[1],
            v: g[2],
        }),
    })
}

/// Stores a fit, replacing the model's previous one.
pub async fn save(conn: &mut PgConnection, tenant: &str, fit: &FitRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO model_fits (tenant_id, model, params, log_likelihood, customers, iterations, fit_ms, fit_time)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, model) DO UPDATE SET params = EXCLUDED.params,
             log_likelihood = EXCLUDED.log_likelihood, customers = EXCLUDED.customers,
             iterations = EXCLUDED.iterations, fit_ms = EXCLUDED.fit_ms, fit_time = EXCLUDED.fit_time",
    )
    .bind(tenant)
    .bind(&fit.model)
    .bind(&fit.params)
    .bind(fit.log_likelihood)
    .bind(fit.customers)
    .bind(fit.iterations)
    .bind(fit.fit_ms)
    .bind(fit.fit_time)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
