//! Prediction handlers: the fitted models, fitting them now, and one customer's predictions.

use boomerang_auth::{Caller, TenantId};
use boomerang_proto::segmentation as pb;
use boomerang_service_kit::time::to_timestamp;
use chrono::Utc;
use tonic::Status;

use super::{ApiError, READ, SegmentationApi, WRITE, customer_of, db, tenant_of};
use crate::db::models::{self, FitRow};
use crate::db::{features, settings as db_settings};
use crate::domain::predictions;

fn fit_proto(fit: &FitRow) -> pb::ModelFit {
    pb::ModelFit {
        model: fit.model.clone(),
        parameters: fit
            .names()
            .iter()
            .zip(&fit.params)
            .map(|(name, value)| ((*name).to_owned(), *value))
            .collect(),
        log_likelihood: fit.log_likelihood,
        customers: fit.customers,
        iterations: fit.iterations,
        fit_ms: fit.fit_ms.into(),
        fit_time: Some(to_timestamp(fit.fit_time)),
    }
}

impl SegmentationApi {
    pub(super) async fn get_models_impl(
        &self,
        caller: &Caller,
        parent: &str,
    ) -> Result<pb::PredictionModels, Status> {
        let tenant = tenant_of(caller, "parent", parent, READ)?;
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let fits = models::all(&mut conn, tenant.as_str()).await.map_err(db)?;
        Ok(pb::PredictionModels {
            models: fits.iter().map(fit_proto).collect(),
            problems: Vec::new(),
        })
    }

    pub(super) async fn fit_models_impl(
        &self,
        caller: &Caller,
        parent: &str,
    ) -> Result<pb::PredictionModels, Status> {
        let tenant = tenant_of(caller, "parent", parent, WRITE)?;
        let outcome = fit_detached(self, tenant).await?;
        Ok(pb::PredictionModels {
            models: outcome.fits.iter().map(fit_proto).collect(),
            problems: outcome.problems,
        })
    }

    pub(super) async fn customer_predictions_impl(
        &self,
        caller: &Caller,
        customer: &str,
    ) -> Result<pb::CustomerPredictions, Status> {
        let (tenant, customer) = customer_of(caller, "customer", customer)?;
        let mut conn = self.writer.pool.acquire().await.map_err(db)?;
        let fits = models::all(&mut conn, tenant.as_str()).await.map_err(db)?;
        let settings = db_settings::load(&mut conn, tenant.as_str())
            .await
            .map_err(db)?
            .settings;
        let stored = features::explain(&mut conn, tenant.as_str(), customer)
            .await
            .map_err(ApiError::from)?;
        let Some((features, _)) = stored else {
            return Err(ApiError::NotFound("no such customer").into());
        };
        let Some(models) = models::models(&fits) else {
            return Err(ApiError::FailedPrecondition(
                "no model is fitted yet: FitPredictionModels fits them (they are also fitted daily)".into(),
            )
            .into());
        };
        let horizon = settings.horizon();
        let p = predictions::predict(&models, &features, Utc::now().date_naive(), &horizon)
            .ok_or_else(|| {
                ApiError::FailedPrecondition(
                    "the customer has no eligible order to predict from".into(),
                )
            })?;
        Ok(pb::CustomerPredictions {
            frequency: p.days.frequency as i32,
            recency_days: p.days.recency as i32,
            age_days: p.days.age as i32,
            repeat_spend: p.repeat_spend,
            p_alive: p.p_alive,
            expected_purchases: p.expected_purchases,
            horizon_days: horizon.purchase_days as i32,
            expected_order_value: p.expected_order_value,
            predicted_value: p.lifetime_value,
            value_months: horizon.value_months as i32,
        })
    }
}

/// Fits in a task of its own: a caller that gives up does not waste the fit.
async fn fit_detached(
    api: &SegmentationApi,
    tenant: TenantId,
) -> Result<crate::predictions::FitOutcome, Status> {
    let writer = api.writer.clone();
    tokio::spawn(async move { crate::predictions::fit(&writer, &tenant).await })
        .await
        .map_err(|err| Status::internal(format!("fit failed: {err}")))?
        .map_err(|err| ApiError::from(err).into())
}
