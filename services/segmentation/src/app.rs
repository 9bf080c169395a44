//! Wiring: the schema, migrations, and the service bundle a host serves.

use std::sync::Arc;
use std::time::Duration;

use boomerang_auth::TokenKeys;
use boomerang_events::{Consumer, ConsumerConfig, EventFeed, EventSource, Outbox, run_sequencer};
use boomerang_proto::segmentation::segmentation_service_server::SegmentationServiceServer;
use boomerang_proto::tonic::server::NamedService;
use boomerang_service_kit::{Platform, Probe, ServiceBundle};
use sqlx::PgPool;
use tonic::transport::Endpoint;

use crate::cache::Cache;
use crate::catalogue::Catalogue;
use crate::config::SegmentationConfig;
use crate::consumer::{IngestionEvents, TYPE_PREFIXES};
use crate::grpc::SegmentationApi;
use crate::population::Residents;
use crate::schedule::{self, Schedule};
use crate::writer::Writer;

/// The Postgres schema holding segmentation's tables.
pub const SCHEMA: &str = "segmentation";
/// The gRPC service name, also its health name.
pub const SERVICE_NAME: &str = <SegmentationServiceServer<SegmentationApi> as NamedService>::NAME;
/// Ingestion's WatchEvents method (services share no crates, so the path is spelled here).
const INGESTION_WATCH_EVENTS: &str = "/boomerang.ingestion.v1.IngestionService/WatchEvents";

/// Creates or upgrades segmentation's schema: the event backbone's tables, then segmentation's own.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    boomerang_service_kit::db::ensure_schema(pool, SCHEMA).await?;
    boomerang_events::migrate(pool).await?;
    sqlx::migrate!("./migrations").run(pool).await
}

/// The pool segmentation uses, confined to its schema.
pub fn pool(platform: &Platform) -> Result<PgPool, sqlx::Error> {
    platform.pg_pool(SCHEMA)
}

/// Why the service cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("ingestion_url: {0}")]
    IngestionUrl(#[from] tonic::transport::Error),
    #[error("cannot mint the event consumer's token: {0}")]
    Token(#[from] boomerang_auth::AuthError),
}

/// The segmentation service, ready to serve: its API, the consumer of ingestion's events, the scheduler, the
/// outbox sequencer, and readiness following Postgres and Redis.
pub fn build(
    platform: &Platform,
    config: &SegmentationConfig,
) -> Result<ServiceBundle, BuildError> {
    let pool = pool(platform)?;
    let outbox = Outbox::new(SCHEMA);
    let cache = Cache::new(
        &platform.config.redis.url,
        &platform.config.redis.key_prefix,
    )?;
    let writer = Writer::new(
        pool.clone(),
        outbox.clone(),
        cache,
        Residents::new(config.resident_customers),
    );
    let shutdown = platform.shutdown.clone();

    let source = EventSource {
        channel: Endpoint::from_shared(config.ingestion_url.clone())?.connect_lazy(),
        method: INGESTION_WATCH_EVENTS,
        token: service_token(&platform.keys)?,
    };
    let consumer = Consumer::new(
        pool.clone(),
        source,
        ConsumerConfig {
            name: "segmentation".into(),
            tenants: config.tenants.clone(),
            type_prefixes: TYPE_PREFIXES.iter().map(|p| (*p).to_owned()).collect(),
        },
        IngestionEvents {
            writer: writer.clone(),
        },
    );
    let consumer_task = tokio::spawn(consumer.run(shutdown.clone()));
    let schedule_task = tokio::spawn(schedule::run(
        writer.clone(),
        Schedule {
            tick: config.tick(),
            recompute_every: config.recompute_interval(),
            fit_every: config.fit_interval(),
            tenants: config.tenants.clone(),
        },
        shutdown.clone(),
    ));
    let sequencer = tokio::spawn(run_sequencer(
        pool.clone(),
        outbox.clone(),
        config.event_retention(),
        shutdown.clone(),
    ));
    let (feed, feed_task) = EventFeed::start(pool.clone(), outbox, shutdown);
    let redis = redis::Client::open(platform.config.redis.url.as_str())?;
    let api = SegmentationApi {
        catalogue: Catalogue::new(pool.clone()),
        writer,
        feed,
    };
    let server = SegmentationServiceServer::new(api)
        .max_decoding_message_size(platform.config.server.max_message_bytes)
        .max_encoding_message_size(platform.config.server.max_message_bytes);
    Ok(ServiceBundle::new(SERVICE_NAME)
        .routes(move |routes| {
            routes.add_service(server);
        })
        .probe(Probe::Postgres(pool))
        .probe(Probe::Redis(redis))
        .task(consumer_task)
        .task(schedule_task)
        .task(sequencer)
        .task(feed_task))
}

/// The token segmentation presents to ingestion: every tenant, events only. Long-lived because the consumer
/// presents it at each (re)connection for as long as the process runs.
fn service_token(keys: &Arc<TokenKeys>) -> Result<String, boomerang_auth::AuthError> {
    keys.mint(
        "service:segmentation",
        &["*".to_owned()],
        &["events.watch".to_owned()],
        Duration::from_secs(10 * 365 * 24 * 3600),
    )
}
