//! CSV exports for the hand-off to an email tool: RFM scores and predictions as of a date, and a segment's members
//! as of a time. They read segmentation's own tables directly (an operator command, like migrate), in one snapshot.

use std::io::Write;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

use crate::db::{custom, memberships, models, settings};
use crate::domain::evaluate::Features;
use crate::domain::predictions;
use crate::domain::rfm::{RfmValues, score_all};
use crate::domain::segments;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error(
        "unknown segment {0:?}; the built-in ones are {1}, and ListSegments lists the tenant's own"
    )]
    UnknownSegment(String, String),
    #[error("the tenant has no fitted prediction model yet (FitPredictionModels fits them)")]
    NoModels,
}

/// Writes `customer_id,recency_days,frequency,monetary,r,f,m,rfm,group` for every customer with an eligible order,
/// scored exactly as the definition says over the population as of the end of `as_of` (UTC). customer_id is the
/// retailer's own id where known, else Boomerang's.
pub async fn rfm(
    pool: &PgPool,
    tenant: &str,
    as_of: NaiveDate,
    out: impl Write,
) -> Result<usize, ExportError> {
    let mut tx = crate::db::snapshot(pool).await?;
    let effective = settings::load(&mut tx, tenant).await?;
    let rows: Vec<(String, i32, i64, i64)> = sqlx::query_as(
        "SELECT coalesce(c.external_id, o.customer_id::text), ($3::date - max(d.day))::int4, count(*), sum(o.amount_minor)::int8
         FROM orders o
         CROSS JOIN LATERAL (SELECT (o.place_time AT TIME ZONE 'UTC')::date AS day) d
         LEFT JOIN customers c ON c.tenant_id = o.tenant_id AND c.customer_id = o.customer_id
         WHERE o.tenant_id = $1 AND o.eligible
           AND (d.day + make_interval(years => $2))::date > $3::date AND d.day <= $3::date
         GROUP BY o.customer_id, c.external_id
         ORDER BY 1",
    )
    .bind(tenant)
    .bind(effective.settings.lookback_years as i32)
    .bind(as_of)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let values: Vec<RfmValues> = rows
        .iter()
        .map(|(_, recency, frequency, monetary)| RfmValues {
            recency_days: *recency as u32,
            frequency: *frequency as u32,
            monetary: *monetary,
        })
        .collect();
    let scores = score_all(&values);
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "customer_id",
        "recency_days",
        "frequency",
        "monetary",
        "r",
        "f",
        "m",
        "rfm",
        "group",
    ])?;
    for ((row, value), score) in rows.iter().zip(&values).zip(&scores) {
        let group = segments::by_id(segments::group_segment(effective.mapping.group(*score)))
            .map_or("", |def| def.display_name);
        writer.write_record([
            row.0.clone(),
            value.recency_days.to_string(),
            value.frequency.to_string(),
            value.monetary.to_string(),
            score.r.to_string(),
            score.f.to_string(),
            score.m.to_string(),
            score.code().to_string(),
            group.to_owned(),
        ])?;
    }
    writer.flush().map_err(csv::Error::from)?;
    Ok(rows.len())
}

/// Writes `customer_id,segment,enter_time,reason` for the members of `segment` at `as_of` (now when `None`).
pub async fn members(
    pool: &PgPool,
    tenant: &str,
    segment: &str,
    as_of: Option<DateTime<Utc>>,
    out: impl Write,
) -> Result<usize, ExportError> {
    let mut tx = crate::db::snapshot(pool).await?;
    // As of a time, a custom id names the segment that had it then: one deleted since, or whose id another took.
    let then = match as_of {
        Some(at) if segments::fixed_id(segment).is_none() => {
            custom::live_at(&mut tx, tenant, segment, at).await?
        }
        _ => None,
    };
    let id = match (then, segments::fixed_id(segment)) {
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => custom::get(&mut tx, tenant, segment)
            .await?
            .map(|row| row.segment)
            .ok_or_else(|| {
                let all: Vec<&str> = segments::CATALOGUE.iter().map(|d| d.slug).collect();
                ExportError::UnknownSegment(segment.to_owned(), all.join(", "))
            })?,
    };
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(["customer_id", "segment", "enter_time", "reason"])?;
    let mut after = 0;
    let mut written = 0;
    loop {
        let page = memberships::members(&mut tx, tenant, id, as_of, after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.customer_id;
        for member in &page {
            writer.write_record([
                member
                    .external_id
                    .clone()
                    .unwrap_or_else(|| member.customer_id.to_string()),
                segment.to_owned(),
                member.enter_time.to_rfc3339(),
                member.enter_reason.clone(),
            ])?;
        }
        written += page.len();
    }
    writer.flush().map_err(csv::Error::from)?;
    Ok(written)
}

/// Writes `customer_id,frequency,recency,T,monetary_value,p_alive,expected_purchases,expected_order_value,
/// predicted_value` for every customer with an eligible order, from its orders as of the end of `as_of` (UTC) and
/// the tenant's fitted models; the summary columns are in days, as `lifetimes` writes them.
pub async fn predictions(
    pool: &PgPool,
    tenant: &str,
    as_of: NaiveDate,
    out: impl Write,
) -> Result<usize, ExportError> {
    let mut tx = crate::db::snapshot(pool).await?;
    let effective = settings::load(&mut tx, tenant).await?;
    let fits = models::all(&mut tx, tenant).await?;
    let models = models::models(&fits).ok_or(ExportError::NoModels)?;
    let rows: Vec<(String, i64, i64, NaiveDate, NaiveDate, i64, i64)> = sqlx::query_as(
        "WITH days AS (
             SELECT o.customer_id, d.day, count(*) AS orders, sum(o.amount_minor)::int8 AS spend
             FROM orders o
             CROSS JOIN LATERAL (SELECT (o.place_time AT TIME ZONE 'UTC')::date AS day) d
             WHERE o.tenant_id = $1 AND o.eligible
               AND (d.day + make_interval(years => $2))::date > $3::date AND d.day <= $3::date
             GROUP BY o.customer_id, d.day)
         SELECT coalesce(c.external_id, days.customer_id::text), sum(orders)::int8, sum(spend)::int8,
                min(day), max(day), count(*), (array_agg(spend ORDER BY day))[1]
         FROM days
         LEFT JOIN customers c ON c.tenant_id = $1 AND c.customer_id = days.customer_id
         GROUP BY days.customer_id, c.external_id
         ORDER BY 1",
    )
    .bind(tenant)
    .bind(effective.settings.lookback_years as i32)
    .bind(as_of)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let horizon = effective.settings.horizon();
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "customer_id",
        "frequency",
        "recency",
        "T",
        "monetary_value",
        "p_alive",
        "expected_purchases",
        "expected_order_value",
        "predicted_value",
    ])?;
    let optional = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.2}"));
    let mut written = 0;
    for (customer, orders, spend, first, last, days, first_spend) in rows {
        let features = Features {
            frequency: orders as u32,
            monetary: spend,
            first_day_spend: first_spend,
            first_day: Some(first),
            last_day: Some(last),
            purchase_days: days as u32,
            ..Features::default()
        };
        let Some(p) = predictions::predict(&models, &features, as_of, &horizon) else {
            continue;
        };
        writer.write_record([
            customer,
            p.days.frequency.to_string(),
            p.days.recency.to_string(),
            p.days.age.to_string(),
            format!("{:.2}", p.repeat_spend),
            format!("{:.6}", p.p_alive),
            format!("{:.6}", p.expected_purchases),
            optional(p.expected_order_value),
            optional(p.lifetime_value),
        ])?;
        written += 1;
    }
    writer.flush().map_err(csv::Error::from)?;
    Ok(written)
}
