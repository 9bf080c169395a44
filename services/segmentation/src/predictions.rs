//! Fitting a tenant's prediction models, on a schedule and on request. The fit reads every customer's features in
//! one snapshot and runs off the async workers; when a custom segment's rule uses predictions, a recompute follows
//! so its members reflect the new parameters.

use std::time::Instant;

use boomerang_auth::TenantId;
use chrono::{SubsecRound, Utc};

use crate::db::models::{self, BGNBD, BGNBD_PARAMS, FitRow, GAMMA_GAMMA, GAMMA_GAMMA_PARAMS};
use crate::db::{features, scoring};
use crate::domain::fit::Fitted;
use crate::domain::{bgnbd, gamma_gamma, predictions, sample};
use crate::writer::{RecomputeError, Writer};

/// Most customers a fit reads.
pub const FIT_SAMPLE: usize = 250_000;

/// What a fit produced: the models it stored, and why any is missing.
#[derive(Debug, Clone, Default)]
pub struct FitOutcome {
    pub fits: Vec<FitRow>,
    pub problems: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FitJobError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Load(#[from] features::LoadError),
    #[error("{0}")]
    Recompute(#[from] RecomputeError),
    #[error("fit failed: {0}")]
    Task(String),
}

fn row<P>(model: &str, fitted: &Fitted<P>, params: Vec<f64>, started: Instant) -> FitRow {
    // Postgres keeps microseconds: the time read back must equal the time returned.
    let now = Utc::now().trunc_subsecs(6);
    FitRow {
        model: model.to_owned(),
        params,
        log_likelihood: fitted.log_likelihood,
        customers: fitted.customers as i64,
        iterations: fitted.iterations as i32,
        fit_ms: started.elapsed().as_millis() as i32,
        fit_time: now,
    }
}

/// What to tell the caller when parameters ended at their bound.
fn bound_note(model: &str, names: &[&str], fitted_at_bound: &[usize]) -> Option<String> {
    if fitted_at_bound.is_empty() {
        return None;
    }
    let which: Vec<&str> = fitted_at_bound.iter().map(|i| names[*i]).collect();
    Some(format!(
        "{model}: {} reached the bound of e^±{}: the data has its optimum at the edge (for bgnbd, buyers so \
         regular that their purchase rates look alike); predictions are those of that limit",
        which.join(", "),
        crate::domain::fit::BOUND
    ))
}

/// Fits BG/NBD and Gamma-Gamma to every customer with an eligible order, and stores what converged.
pub async fn fit(writer: &Writer, tenant: &TenantId) -> Result<FitOutcome, FitJobError> {
    let today = Utc::now().date_naive();
    let (snapshot, all) = writer.snapshot_population(tenant.as_str()).await?;
    snapshot.commit().await?;
    let results = tokio::task::spawn_blocking(move || {
        // A large tenant is fitted on a sample chosen by a hash of the customer id (the same customers at every
        // fit): a quarter of a million customers pin the parameters down as well as a million, at a quarter of
        // the cost.
        let keep = (FIT_SAMPLE as f64 / all.len().max(1) as f64).min(1.0);
        let summaries: Vec<(bgnbd::Days, f64)> = all
            .iter()
            .filter(|(f, _)| keep >= 1.0 || sample::in_sample(f.customer_id, 0, keep))
            .filter_map(|(f, _)| predictions::repeat_buying(f, today))
            .collect();
        drop(all);
        let days: Vec<bgnbd::Days> = summaries.iter().map(|(d, _)| *d).collect();
        let started = Instant::now();
        let bg = bgnbd::fit(&days).map(|f| {
            let p = f.params;
            let note = bound_note(BGNBD, BGNBD_PARAMS, &f.at_bound);
            (row(BGNBD, &f, vec![p.r, p.alpha, p.a, p.b], started), note)
        });
        let repeat: Vec<(u32, f64)> = summaries.iter().map(|(d, m)| (d.frequency, *m)).collect();
        let started = Instant::now();
        let gg = gamma_gamma::fit(&repeat).map(|f| {
            let p = f.params;
            let note = bound_note(GAMMA_GAMMA, GAMMA_GAMMA_PARAMS, &f.at_bound);
            (row(GAMMA_GAMMA, &f, vec![p.p, p.q, p.v], started), note)
        });
        [(BGNBD, bg), (GAMMA_GAMMA, gg)]
    })
    .await
    .map_err(|err| FitJobError::Task(err.to_string()))?;
    let mut outcome = FitOutcome::default();
    let mut tx = writer.pool.begin().await?;
    for (model, result) in results {
        match result {
            Ok((fit, note)) => {
                models::save(&mut tx, tenant.as_str(), &fit).await?;
                outcome.fits.push(fit);
                outcome.problems.extend(note);
            }
            Err(err) => outcome.problems.push(format!("{model}: {err}")),
        }
    }
    let needs_recompute = scoring::load(&mut tx, tenant.as_str())
        .await?
        .custom
        .iter()
        .any(|c| c.program.needs_predictions);
    tx.commit().await?;
    if needs_recompute && !outcome.fits.is_empty() {
        writer.recompute_now(tenant).await?;
    }
    Ok(outcome)
}
