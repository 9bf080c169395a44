//! Ingestion's API against real Postgres: the service served on port 0 with a database of its own per test, called
//! through the generated client.

mod activity;
mod auth;
mod customers;
mod erasure;
mod import;
mod orders;

use std::time::Duration;

use boomerang_proto::events::{Event, WatchEventsRequest};
use boomerang_proto::ingestion as pb;
use boomerang_proto::ingestion::ingestion_service_client::IngestionServiceClient;
use boomerang_service_kit::Platform;
use boomerang_testkit::{TestDb, TestRedis, TestServer, authed};
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic_types::StatusExt;

pub const TENANT: &str = "acme";
pub const PARENT: &str = "tenants/acme";

pub struct App {
    pub server: TestServer,
    pub pool: PgPool,
    pub token: String,
    _db: TestDb,
    _redis: TestRedis,
}

pub async fn spawn() -> App {
    spawn_with(|_| {}).await
}

/// Spawns ingestion after letting the test adjust the platform configuration.
pub async fn spawn_with(adjust: impl FnOnce(&mut Platform)) -> App {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let mut platform = boomerang_testkit::platform(&db, &redis);
    adjust(&mut platform);
    let pool = boomerang_ingestion::pool(&platform).unwrap();
    boomerang_ingestion::migrate(&pool).await.unwrap();
    let config: boomerang_ingestion::config::Section =
        boomerang_service_kit::config::load(&[boomerang_ingestion::DEFAULTS], None).unwrap();
    let bundle = boomerang_ingestion::build(&platform, &config.ingestion).unwrap();
    let server = TestServer::start(&platform, vec![bundle]).await;
    let token = server.token(&[TENANT], &["ingestion.*", "events.watch"]);
    App {
        server,
        pool,
        token,
        _db: db,
        _redis: redis,
    }
}

impl App {
    pub fn client(&self) -> IngestionServiceClient<Channel> {
        IngestionServiceClient::new(self.server.channel())
    }

    /// A request with the test tenant's token.
    pub fn req<T>(&self, message: T) -> tonic::Request<T> {
        authed(&self.token, message)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Every event published so far whose type starts with `prefix`, read through WatchEvents.
    pub async fn events(&self, prefix: &str, at_least: usize) -> Vec<Event> {
        let mut stream = self
            .client()
            .watch_events(self.req(WatchEventsRequest {
                after_position: 0,
                tenants: vec![],
                type_prefixes: vec![prefix.to_owned()],
            }))
            .await
            .unwrap()
            .into_inner();
        let mut events = Vec::new();
        while events.len() < at_least {
            let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "waited 10s for {at_least} {prefix} events, got {}",
                        events.len()
                    )
                });
            events.extend(next.unwrap().unwrap().events);
        }
        events
    }
}

pub fn identifier(kind: pb::IdentifierKind, value: &str) -> pb::Identifier {
    pb::Identifier {
        kind: kind as i32,
        value: value.to_owned(),
        namespace: String::new(),
    }
}

pub fn external(value: &str) -> pb::Identifier {
    identifier(pb::IdentifierKind::External, value)
}

pub fn email(value: &str) -> pb::Identifier {
    identifier(pb::IdentifierKind::Email, value)
}

pub fn record(identifiers: Vec<pb::Identifier>) -> pb::CustomerRecord {
    pb::CustomerRecord {
        identifiers,
        ..Default::default()
    }
}

pub fn eur(minor_units: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency_code: "EUR".into(),
        minor_units,
    })
}

/// Midnight UTC `days` days ago: the same value however often a test asks, so repeated items are identical.
pub fn days_ago(days: i64) -> Option<prost_types::Timestamp> {
    let midnight = chrono::Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    Some(boomerang_service_kit::time::to_timestamp(
        midnight - chrono::Duration::days(days),
    ))
}

/// The fields of the INVALID_ARGUMENT violations of `status`.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .expect("field violations")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect()
}

pub fn statuses(results: &[pb::ItemResult]) -> Vec<pb::ItemStatus> {
    results.iter().map(|r| r.status()).collect()
}
