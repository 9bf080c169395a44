//! Prediction models and K-means clusters end to end: fitted on the orders ingested, served per customer, usable in
//! custom rules, exported; clusters found when the tenant asks for them and gone when it stops.

use boomerang_proto::ingestion as ipb;
use boomerang_proto::segmentation as pb;
use boomerang_testkit::authed;
use tonic::Code;

use crate::env::{Env, has, start};
use ipb::OrderStatus::Paid;

/// 80 regular buyers of different rhythms and amounts (a third stopped long ago), plus FREQ (weekly until
/// yesterday) and GONE (weekly until 400 days ago).
async fn shoppers(env: &Env) -> (String, String) {
    let mut orders = Vec::new();
    let mut add = |customer: String, count: i64, gap: i64, last_days_ago: i64, amount: i64| {
        for k in 0..count {
            orders.push(crate::env::order(
                &format!("{customer}-{k}"),
                &customer,
                last_days_ago + k * gap,
                amount + 100 * k,
                Paid,
            ));
        }
    };
    for i in 0..80 {
        let stopped = if i % 3 == 0 { 200 + i } else { i % 10 };
        add(
            format!("P{i:02}"),
            2 + i % 5,
            7 + (i % 4) * 7,
            stopped,
            1_000 + (i % 7) * 500,
        );
    }
    add("FREQ".into(), 8, 7, 1, 3_000);
    add("GONE".into(), 8, 7, 400, 3_000);
    env.ingest_orders("acme", orders).await;
    let freq = env.customer("acme", "FREQ").await;
    let gone = env.customer("acme", "GONE").await;
    env.wait_for("acme", &gone, "GONE known", |s| !s.is_empty())
        .await;
    env.wait_for("acme", &freq, "FREQ known", |s| !s.is_empty())
        .await;
    (freq, gone)
}

impl Env {
    async fn predictions(&self, customer: &str) -> Result<pb::CustomerPredictions, tonic::Status> {
        self.segments()
            .get_customer_predictions(authed(
                &self.reader_token("acme"),
                pb::GetCustomerPredictionsRequest {
                    customer: customer.into(),
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    async fn set_clusters(&self, clusters: i32) -> Result<pb::Settings, tonic::Status> {
        let mut settings = self.settings("acme").await;
        settings.clusters = clusters;
        self.update_settings("acme", settings).await
    }

    async fn cluster_segments(&self) -> Vec<pb::Segment> {
        self.segments()
            .list_segments(authed(
                &self.reader_token("acme"),
                pb::ListSegmentsRequest {
                    parent: "tenants/acme".into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .segments
            .into_iter()
            .filter(|s| s.family == pb::SegmentFamily::Cluster as i32)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_are_fitted_served_and_drive_rules() {
    let env = start(None).await;
    let (freq, gone) = shoppers(&env).await;
    assert_eq!(
        env.predictions(&freq).await.unwrap_err().code(),
        Code::FailedPrecondition,
        "nothing fitted yet"
    );
    let fitted = env
        .segments()
        .fit_prediction_models(authed(
            &env.reader_token("acme"),
            pb::FitPredictionModelsRequest {
                parent: "tenants/acme".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(fitted.problems.is_empty(), "{:?}", fitted.problems);
    let names: Vec<&str> = fitted.models.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(names, ["bgnbd", "gamma_gamma"]);
    let bg = &fitted.models[0];
    assert_eq!(bg.customers, 82);
    let mut keys: Vec<&String> = bg.parameters.keys().collect();
    keys.sort();
    assert_eq!(keys, ["a", "alpha", "b", "r"]);
    assert!(bg.log_likelihood < 0.0 && bg.parameters.values().all(|p| *p > 0.0));
    let stored = env
        .segments()
        .get_prediction_models(authed(
            &env.reader_token("acme"),
            pb::GetPredictionModelsRequest {
                parent: "tenants/acme".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.models, fitted.models);

    let active = env.predictions(&freq).await.unwrap();
    let lapsed = env.predictions(&gone).await.unwrap();
    assert_eq!((active.frequency, active.recency_days), (7, 49));
    assert!(active.p_alive > lapsed.p_alive, "{active:?} {lapsed:?}");
    assert!(active.expected_purchases > lapsed.expected_purchases);
    assert!(active.predicted_value.unwrap() > lapsed.predicted_value.unwrap());
    assert!(active.expected_order_value.unwrap() > 0.0);

    // A rule on P(alive) puts GONE in and keeps FREQ out, as the predictions say.
    let threshold = (active.p_alive + lapsed.p_alive) / 2.0;
    let segment = env
        .segments()
        .create_segment(authed(
            &env.reader_token("acme"),
            pb::CreateSegmentRequest {
                parent: "tenants/acme".into(),
                segment_id: "slipping-away".into(),
                segment: Some(pb::Segment {
                    rule: format!("p_alive < {threshold} && frequency >= 3"),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(segment.member_count > 0);
    assert!(has(
        &env.segments_of("acme", &gone).await.0,
        "slipping-away"
    ));
    assert!(!has(
        &env.segments_of("acme", &freq).await.0,
        "slipping-away"
    ));

    // The export carries the same figures.
    let mut csv = Vec::new();
    let rows = boomerang_segmentation::export::predictions(
        &env.segmentation_pool,
        "acme",
        chrono::Utc::now().date_naive(),
        &mut csv,
    )
    .await
    .unwrap();
    assert_eq!(rows, 82);
    let csv = String::from_utf8(csv).unwrap();
    let line = csv.lines().find(|l| l.starts_with("FREQ,")).unwrap();
    let fields: Vec<&str> = line.split(',').collect();
    assert_eq!(&fields[1..4], ["7", "49", "50"]);
    let p_alive: f64 = fields[5].parse().unwrap();
    assert!((p_alive - active.p_alive).abs() < 1e-6);

    assert_eq!(
        env.predictions("tenants/acme/customers/999999")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let err = env
        .segments()
        .get_customer_predictions(authed(
            &env.reader_token("globex"),
            pb::GetCustomerPredictionsRequest {
                customer: freq.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_appear_when_asked_for_and_go_when_not() {
    let env = start(None).await;
    let (freq, gone) = shoppers(&env).await;
    assert!(env.cluster_segments().await.is_empty());
    let err = env.set_clusters(1).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    env.set_clusters(3).await.unwrap();
    let clusters = env.cluster_segments().await;
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "tenants/acme/segments/cluster-1",
            "tenants/acme/segments/cluster-2",
            "tenants/acme/segments/cluster-3"
        ]
    );
    // Every scored customer is in exactly one cluster; the best customers are in the first.
    assert_eq!(clusters.iter().map(|c| c.member_count).sum::<i64>(), 82);
    assert!(
        clusters[0].display_name.starts_with("Recent"),
        "{clusters:?}"
    );
    env.wait_for("acme", &freq, "FREQ in the first cluster", |s| {
        has(s, "cluster-1")
    })
    .await;
    let gone_segments = env.segments_of("acme", &gone).await.0;
    assert_eq!(
        gone_segments
            .iter()
            .filter(|s| s.starts_with("cluster-"))
            .count(),
        1
    );
    assert!(!has(&gone_segments, "cluster-1"));

    env.set_clusters(0).await.unwrap();
    assert!(env.cluster_segments().await.is_empty());
    env.wait_for("acme", &freq, "FREQ in no cluster", |s| {
        !s.iter().any(|x| x.starts_with("cluster-"))
    })
    .await;
}
