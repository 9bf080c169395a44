//! Wiring: the schema, migrations, and the service bundle a host serves.

use boomerang_events::{EventFeed, Outbox, run_sequencer};
use boomerang_proto::ingestion::ingestion_service_server::IngestionServiceServer;
use boomerang_proto::tonic::server::NamedService;
use boomerang_service_kit::{Platform, Probe, ServiceBundle};
use sqlx::PgPool;

use crate::config::IngestionConfig;
use crate::grpc::IngestionApi;

/// The Postgres schema holding ingestion's tables.
pub const SCHEMA: &str = "ingestion";
/// The gRPC service name, also its health name.
pub const SERVICE_NAME: &str = <IngestionServiceServer<IngestionApi> as NamedService>::NAME;
/// The full path of ingestion's WatchEvents method, for event consumers.
pub const WATCH_EVENTS: &str = "/boomerang.ingestion.v1.IngestionService/WatchEvents";

/// Creates or upgrades ingestion's schema: the event backbone's tables, then ingestion's own.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    boomerang_service_kit::db::ensure_schema(pool, SCHEMA).await?;
    boomerang_events::migrate(pool).await?;
    sqlx::migrate!("./migrations").run(pool).await
}

/// The pool ingestion uses, confined to its schema.
pub fn pool(platform: &Platform) -> Result<PgPool, sqlx::Error> {
    platform.pg_pool(SCHEMA)
}

/// The ingestion service, ready to serve: its API, the outbox sequencer, and readiness following Postgres.
pub fn build(platform: &Platform, config: &IngestionConfig) -> Result<ServiceBundle, sqlx::Error> {
    let pool = pool(platform)?;
    let outbox = Outbox::new(SCHEMA);
    let shutdown = platform.shutdown.clone();
    let sequencer = tokio::spawn(run_sequencer(
        pool.clone(),
        outbox.clone(),
        config.event_retention(),
        shutdown.clone(),
    ));
    let (feed, feed_task) = EventFeed::start(pool.clone(), outbox.clone(), shutdown);
    let api = IngestionApi {
        pool: pool.clone(),
        outbox,
        cache: Default::default(),
        feed,
        config: config.clone(),
    };
    let server = IngestionServiceServer::new(api)
        .max_decoding_message_size(platform.config.server.max_message_bytes)
        .max_encoding_message_size(platform.config.server.max_message_bytes);
    Ok(ServiceBundle::new(SERVICE_NAME)
        .routes(move |routes| {
            routes.add_service(server);
        })
        .probe(Probe::Postgres(pool))
        .task(sequencer)
        .task(feed_task))
}
