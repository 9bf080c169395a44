//! A five-condition custom rule over every customer of the recompute benchmark's tenant, and the prediction fit on
//! the same population. PreviewSegment reports the evaluation time apart from reading the customers; CreateSegment
//! adds writing the members to Postgres and Redis; the baseline is the same conditions as one SQL count over
//! segmentation's features table, which must find the same number of customers.

use std::time::{Duration, Instant};

use boomerang_proto::segmentation as pb;
use boomerang_proto::segmentation::segmentation_service_client::SegmentationServiceClient;
use boomerang_testkit::authed;
use sqlx::PgConnection;
use tonic::transport::Channel;

use crate::report::ms;

pub const RULE: &str = r#"frequency >= 3 && recency_days <= 365 && average_order_value >= 5000 && first_order_channel in ["web", "app"] && tenure_days > 180"#;

/// The rule as a user would write it in SQL (integer division turned into a product, which Postgres cannot divide
/// by zero on).
const SQL: &str = "SELECT count(*) FROM features
     WHERE tenant_id = $1 AND frequency >= 3 AND current_date - last_day <= 365 AND monetary >= 5000 * frequency
       AND first_channel IN (2, 3) AND current_date - first_day > 180";

pub struct Figures {
    pub customers: i64,
    pub matching: i64,
    pub preview: Duration,
    pub evaluate_ms: i64,
    pub create: Duration,
    pub sql: Duration,
    pub fits: Vec<pb::ModelFit>,
    pub fit: Duration,
}

pub async fn measure(
    channel: Channel,
    conn: &mut PgConnection,
    tenant: &str,
    token: &str,
) -> anyhow::Result<Figures> {
    let mut client = SegmentationServiceClient::new(channel);
    let started = Instant::now();
    let preview = client
        .preview_segment(authed(
            token,
            pb::PreviewSegmentRequest {
                parent: format!("tenants/{tenant}"),
                rule: RULE.into(),
                sample_size: 10,
            },
        ))
        .await?
        .into_inner();
    let preview_time = started.elapsed();

    let started = Instant::now();
    let sql_count: i64 = sqlx::query_scalar(SQL)
        .bind(tenant)
        .fetch_one(&mut *conn)
        .await?;
    let sql = started.elapsed();
    anyhow::ensure!(
        sql_count == preview.matching_customers,
        "the rule matched {} customers, the SQL {sql_count}",
        preview.matching_customers
    );

    let started = Instant::now();
    let created = client
        .create_segment(authed(
            token,
            pb::CreateSegmentRequest {
                parent: format!("tenants/{tenant}"),
                segment_id: "bench-rule".into(),
                segment: Some(pb::Segment {
                    rule: RULE.into(),
                    ..Default::default()
                }),
            },
        ))
        .await?
        .into_inner();
    let create = started.elapsed();
    anyhow::ensure!(
        created.member_count == sql_count,
        "the segment has {} members, the SQL counts {sql_count}",
        created.member_count
    );

    let started = Instant::now();
    let fitted = client
        .fit_prediction_models(authed(
            token,
            pb::FitPredictionModelsRequest {
                parent: format!("tenants/{tenant}"),
            },
        ))
        .await?
        .into_inner();
    let fit = started.elapsed();
    for problem in &fitted.problems {
        println!("fit problem: {problem}");
    }
    println!(
        "rule: preview {:.0} ms (evaluation {} ms), create {:.0} ms, SQL {:.0} ms, {} of {} customers match; fit {:.0} ms",
        ms(preview_time),
        preview.evaluate_ms,
        ms(create),
        ms(sql),
        sql_count,
        preview.evaluated_customers,
        ms(fit)
    );
    Ok(Figures {
        customers: preview.evaluated_customers,
        matching: sql_count,
        preview: preview_time,
        evaluate_ms: preview.evaluate_ms,
        create,
        sql,
        fits: fitted.models,
        fit,
    })
}
