//! The environment of the segmentation tests: ingestion and segmentation as two servers (two Deployments),
//! segmentation consuming ingestion's events, and helpers to feed and read them.

use std::time::Duration;

use boomerang_proto::ingestion as ipb;
use boomerang_proto::ingestion::ingestion_service_client::IngestionServiceClient;
use boomerang_proto::segmentation as pb;
use boomerang_proto::segmentation::segmentation_service_client::SegmentationServiceClient;
use boomerang_service_kit::Platform;
use boomerang_service_kit::time::to_timestamp;
use boomerang_testkit::{TestDb, TestRedis, TestServer, authed, eventually};
use chrono::{DateTime, Utc};
use tonic::transport::Channel;

pub const WAIT: Duration = Duration::from_secs(30);

/// Ingestion and segmentation as two servers (two Deployments), segmentation consuming ingestion's events.
pub struct Env {
    _db: TestDb,
    _redis: TestRedis,
    pub redis_prefix: String,
    pub ingestion: TestServer,
    pub segmentation: TestServer,
    pub segmentation_pool: sqlx::PgPool,
    segmentation_platform: Platform,
    segmentation_config: boomerang_segmentation::SegmentationConfig,
}

pub async fn start(redis_url: Option<&str>) -> Env {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let platform = boomerang_testkit::platform(&db, &redis);
    boomerang_ingestion::migrate(&boomerang_ingestion::pool(&platform).unwrap())
        .await
        .unwrap();
    let ingestion_config: boomerang_ingestion::config::Section =
        boomerang_service_kit::config::load(&[boomerang_ingestion::DEFAULTS], None).unwrap();
    let ingestion = TestServer::start(
        &platform,
        vec![boomerang_ingestion::build(&platform, &ingestion_config.ingestion).unwrap()],
    )
    .await;

    let mut kit = boomerang_testkit::kit_config(&db, &redis);
    if let Some(url) = redis_url {
        kit.redis.url = url.to_owned();
    }
    let seg_platform = Platform::new(kit, boomerang_service_kit::Shutdown::new()).unwrap();
    let segmentation_pool = boomerang_segmentation::pool(&seg_platform).unwrap();
    boomerang_segmentation::migrate(&segmentation_pool)
        .await
        .unwrap();
    let mut config = section();
    config.ingestion_url = format!("http://{}", ingestion.addr());
    config.tick_ms = 200;
    let segmentation = TestServer::start(
        &seg_platform,
        vec![boomerang_segmentation::build(&seg_platform, &config).unwrap()],
    )
    .await;
    Env {
        redis_prefix: redis.prefix().to_owned(),
        _db: db,
        _redis: redis,
        ingestion,
        segmentation,
        segmentation_pool,
        segmentation_platform: seg_platform,
        segmentation_config: config,
    }
}

pub fn section() -> boomerang_segmentation::SegmentationConfig {
    #[derive(serde::Deserialize)]
    struct Section {
        segmentation: boomerang_segmentation::SegmentationConfig,
    }
    let section: Section =
        boomerang_service_kit::config::load(&[boomerang_segmentation::DEFAULTS], None).unwrap();
    section.segmentation
}

impl Env {
    /// Another segmentation server on the same database and cache, as a restarted process would be: nothing in
    /// memory.
    pub async fn another_segmentation(&self) -> TestServer {
        let bundle =
            boomerang_segmentation::build(&self.segmentation_platform, &self.segmentation_config)
                .unwrap();
        TestServer::start(&self.segmentation_platform, vec![bundle]).await
    }

    pub fn writer_token(&self, tenant: &str) -> String {
        self.ingestion.token(&[tenant], &["ingestion.*"])
    }

    pub fn reader_token(&self, tenant: &str) -> String {
        self.segmentation
            .token(&[tenant], &["segmentation.*", "events.watch"])
    }

    pub fn ingest(&self) -> IngestionServiceClient<Channel> {
        IngestionServiceClient::new(self.ingestion.channel())
    }

    pub fn segments(&self) -> SegmentationServiceClient<Channel> {
        SegmentationServiceClient::new(self.segmentation.channel())
    }

    /// Orders of customers known by their external id: (order id, external id, days ago, amount, status), placed
    /// on the web.
    pub async fn orders(&self, tenant: &str, orders: &[(&str, &str, i64, i64, ipb::OrderStatus)]) {
        let orders = orders
            .iter()
            .map(|(id, customer, days_ago, amount, status)| {
                order(id, customer, *days_ago, *amount, *status)
            })
            .collect();
        self.ingest_orders(tenant, orders).await;
    }

    pub async fn ingest_orders(&self, tenant: &str, orders: Vec<ipb::Order>) {
        let response = self
            .ingest()
            .ingest_orders(authed(
                &self.writer_token(tenant),
                ipb::IngestOrdersRequest {
                    parent: format!("tenants/{tenant}"),
                    orders,
                    mode: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.summary.unwrap().invalid, 0);
    }

    /// Market transactions of customers known by their external id: (transaction id, external id, merchant id,
    /// merchant category, days ago, amount).
    pub async fn transactions(&self, tenant: &str, rows: &[(&str, &str, &str, &str, i64, i64)]) {
        let transactions = rows
            .iter()
            .map(
                |(id, customer, merchant, category, days_ago, amount)| ipb::MarketTransaction {
                    transaction_id: (*id).into(),
                    customer: Some(external_id(customer)),
                    merchant_id: (*merchant).into(),
                    merchant_category: (*category).into(),
                    amount: Some(ipb::Money {
                        currency_code: "EUR".into(),
                        minor_units: *amount,
                    }),
                    occur_time: Some(to_timestamp(Utc::now() - chrono::Duration::days(*days_ago))),
                    ..Default::default()
                },
            )
            .collect();
        let response = self
            .ingest()
            .ingest_transactions(authed(
                &self.writer_token(tenant),
                ipb::IngestTransactionsRequest {
                    parent: format!("tenants/{tenant}"),
                    transactions,
                    mode: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.summary.unwrap().invalid, 0);
    }

    /// The tenant's scoring settings.
    pub async fn settings(&self, tenant: &str) -> pb::Settings {
        self.segments()
            .get_settings(authed(
                &self.reader_token(tenant),
                pb::GetSettingsRequest {
                    parent: format!("tenants/{tenant}"),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    /// Replaces the tenant's scoring settings.
    pub async fn update_settings(
        &self,
        tenant: &str,
        settings: pb::Settings,
    ) -> Result<pb::Settings, tonic::Status> {
        self.segments()
            .update_settings(authed(
                &self.reader_token(tenant),
                pb::UpdateSettingsRequest {
                    settings: Some(settings),
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Engagement events of a customer known by its external id, one per `days_ago`.
    pub async fn engaged(&self, tenant: &str, external: &str, days_ago: &[i64]) {
        let events = days_ago
            .iter()
            .enumerate()
            .map(|(i, days)| ipb::EngagementEvent {
                event_id: format!("{external}-E{i}"),
                customer: Some(external_id(external)),
                r#type: ipb::EngagementType::AppOpened as i32,
                occur_time: Some(to_timestamp(Utc::now() - chrono::Duration::days(*days))),
                ..Default::default()
            })
            .collect();
        let response = self
            .ingest()
            .ingest_engagement_events(authed(
                &self.writer_token(tenant),
                ipb::IngestEngagementEventsRequest {
                    parent: format!("tenants/{tenant}"),
                    events,
                    mode: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.summary.unwrap().invalid, 0);
    }

    /// Sets a customer's marketing consent on one channel.
    pub async fn consent(
        &self,
        tenant: &str,
        customer: ipb::Identifier,
        channel: ipb::ConsentChannel,
        granted: bool,
    ) {
        let response = self
            .ingest()
            .set_consents(authed(
                &self.writer_token(tenant),
                ipb::SetConsentsRequest {
                    parent: format!("tenants/{tenant}"),
                    changes: vec![ipb::ConsentChange {
                        customer: Some(customer),
                        consent: Some(ipb::Consent {
                            channel: channel as i32,
                            purpose: ipb::ConsentPurpose::Marketing as i32,
                            granted,
                            change_time: Some(to_timestamp(Utc::now())),
                            source: "test".into(),
                        }),
                    }],
                    mode: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.summary.unwrap().invalid, 0);
    }

    /// Creates or updates a customer known by its external id, with a birth date.
    pub async fn born(&self, tenant: &str, external: &str, birth_date: &str) {
        self.upsert_customer(
            tenant,
            ipb::CustomerRecord {
                identifiers: vec![external_id(external)],
                birth_date: birth_date.into(),
                ..Default::default()
            },
        )
        .await;
    }

    /// Creates or updates one customer through ingestion; returns the customer's name.
    pub async fn upsert_customer(&self, tenant: &str, record: ipb::CustomerRecord) -> String {
        let response = self
            .ingest()
            .upsert_customers(authed(
                &self.writer_token(tenant),
                ipb::UpsertCustomersRequest {
                    parent: format!("tenants/{tenant}"),
                    customers: vec![record],
                    mode: 0,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.summary.unwrap().invalid, 0);
        response.results[0].resource.clone()
    }

    /// The name of the customer known by its external id.
    pub async fn customer(&self, tenant: &str, external: &str) -> String {
        self.customer_by(tenant, external_id(external)).await
    }

    /// The name of the customer that owns `identifier`.
    pub async fn customer_by(&self, tenant: &str, identifier: ipb::Identifier) -> String {
        self.ingest()
            .lookup_customer(authed(
                &self.writer_token(tenant),
                ipb::LookupCustomerRequest {
                    parent: format!("tenants/{tenant}"),
                    identifier: Some(identifier),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .name
    }

    /// Erases the customer through ingestion.
    pub async fn erase(&self, tenant: &str, customer: &str) {
        self.ingest()
            .erase_customer(authed(
                &self.writer_token(tenant),
                ipb::EraseCustomerRequest {
                    name: customer.into(),
                },
            ))
            .await
            .unwrap();
    }

    /// A full recompute of the tenant through `server`.
    pub async fn recompute(&self, server: &TestServer, tenant: &str) -> pb::RecomputeResponse {
        SegmentationServiceClient::new(server.channel())
            .recompute(authed(
                &self.reader_token(tenant),
                pb::RecomputeRequest {
                    parent: format!("tenants/{tenant}"),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn segments_of(&self, tenant: &str, customer: &str) -> (Vec<String>, String) {
        let response = self
            .segments()
            .get_customer_segments(authed(
                &self.reader_token(tenant),
                pb::GetCustomerSegmentsRequest {
                    customer: customer.into(),
                    as_of_time: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let slugs = response
            .segments
            .iter()
            .map(|s| s.rsplit('/').next().unwrap().to_owned())
            .collect();
        (slugs, response.source)
    }

    /// Waits until the customer's segments, read from the cache, satisfy `check`.
    pub async fn wait_for(
        &self,
        tenant: &str,
        customer: &str,
        what: &str,
        check: impl Fn(&[String]) -> bool,
    ) {
        eventually(WAIT, what, || async {
            let (segments, source) = self.segments_of(tenant, customer).await;
            (source == "cache" && check(&segments)).then_some(())
        })
        .await;
    }

    pub async fn members(
        &self,
        tenant: &str,
        segment: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Vec<String> {
        self.segments()
            .list_segment_members(authed(
                &self.reader_token(tenant),
                pb::ListSegmentMembersRequest {
                    segment: format!("tenants/{tenant}/segments/{segment}"),
                    as_of_time: as_of.map(to_timestamp),
                    page_size: 0,
                    page_token: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .members
            .into_iter()
            .map(|m| m.external_id)
            .collect()
    }

    pub async fn explain(&self, tenant: &str, customer: &str) -> pb::ExplainCustomerResponse {
        self.segments()
            .explain_customer(authed(
                &self.reader_token(tenant),
                pb::ExplainCustomerRequest {
                    customer: customer.into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }
}

pub fn external_id(value: &str) -> ipb::Identifier {
    ipb::Identifier {
        kind: ipb::IdentifierKind::External as i32,
        value: value.into(),
        namespace: String::new(),
    }
}

/// A web order of a customer known by its external id, placed `days_ago`.
pub fn order(
    id: &str,
    customer: &str,
    days_ago: i64,
    amount: i64,
    status: ipb::OrderStatus,
) -> ipb::Order {
    ipb::Order {
        order_id: id.into(),
        customer: Some(external_id(customer)),
        channel: ipb::Channel::Web as i32,
        place_time: Some(to_timestamp(Utc::now() - chrono::Duration::days(days_ago))),
        status: status as i32,
        amount: Some(ipb::Money {
            currency_code: "EUR".into(),
            minor_units: amount,
        }),
        ..Default::default()
    }
}

pub fn has(segments: &[String], slug: &str) -> bool {
    segments.iter().any(|s| s == slug)
}
