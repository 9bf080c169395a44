use std::future::Future;
use std::time::Duration;

use boomerang_proto::events::{Event, WatchEventsRequest, WatchEventsResponse};
use boomerang_service_kit::Shutdown;
use futures::{FutureExt, StreamExt};
use sqlx::{PgConnection, PgPool};
use tonic::transport::Channel;

/// Where a consumer reads events from: a service's `WatchEvents` RPC.
#[derive(Clone, Debug)]
pub struct EventSource {
    /// A channel to the publishing service.
    pub channel: Channel,
    /// The full method path, for example `/boomerang.ingestion.v1.IngestionService/WatchEvents`.
    pub method: &'static str,
    /// A bearer token with the `events.watch` scope for the tenants to consume.
    pub token: String,
}

/// What a consumer reads and under which name it keeps its cursor.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// Unique name of the consumer; its cursor is stored under it.
    pub name: String,
    /// Only these tenants (a shard of the tenants); empty for every tenant the token allows.
    pub tenants: Vec<String>,
    /// Only these event type prefixes; empty for all.
    pub type_prefixes: Vec<String>,
}

/// A handler failed; the batch is rolled back and retried.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Payload(#[from] crate::PayloadError),
    #[error("{0}")]
    Other(String),
}

/// Applies a batch of events. Everything it writes goes through `tx`, the transaction that also advances the
/// consumer's cursor, so a batch's effects commit exactly once.
pub trait EventHandler: Send + Sync + 'static {
    /// Work to do after the batch committed (for example updating a cache), produced by [`Self::handle`].
    type AfterCommit: Send;

    fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[Event],
    ) -> impl Future<Output = Result<Self::AfterCommit, HandlerError>> + Send;

    /// Runs once the batch's transaction committed. A crash before it runs loses only this follow-up work, which is
    /// why it may only touch things that can be rebuilt from Postgres.
    fn after_commit(&self, work: Self::AfterCommit) -> impl Future<Output = ()> + Send;
}

/// Reads another service's events and applies them with a handler, keeping a durable cursor.
pub struct Consumer<H> {
    pool: PgPool,
    source: EventSource,
    config: ConsumerConfig,
    handler: H,
}

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Most events handled in one transaction when responses are already waiting.
const MAX_BATCH_EVENTS: usize = 200;

impl<H: EventHandler> Consumer<H> {
    /// A consumer that stores its cursor (and whatever the handler writes) through `pool`.
    pub fn new(pool: PgPool, source: EventSource, config: ConsumerConfig, handler: H) -> Self {
        Self {
            pool,
            source,
            config,
            handler,
        }
    }

    /// Consumes until shutdown, reconnecting with backoff after any failure and resuming from the stored cursor.
    pub async fn run(self, shutdown: Shutdown) {
        let mut backoff = Duration::from_millis(50);
        while !shutdown.is_triggered() {
            let result = tokio::select! {
                result = self.consume_stream() => result,
                () = shutdown.wait() => break,
            };
            match result {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(err) => {
                    tracing::warn!(consumer = %self.config.name, error = %err, "event consumer interrupted; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.wait() => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Opens one stream from the stored cursor and applies it until it ends or fails.
    async fn consume_stream(&self) -> Result<(), ConsumeError> {
        let after = consumer_position(&self.pool, &self.config.name).await?;
        let mut stream = self.open(after).await?;
        while let Some(response) = stream.next().await {
            let mut events = response?.events;
            // A consumer that fell behind finds more responses already received: handling them in the same
            // transaction lets it catch up, instead of paying a transaction per response at the rate they come in.
            while events.len() < MAX_BATCH_EVENTS {
                match stream.next().now_or_never() {
                    Some(Some(response)) => events.extend(response?.events),
                    _ => break,
                }
            }
            let Some(last) = events.last() else { continue };
            let last_position = last.position;
            let mut tx = self.pool.begin().await?;
            let after_commit = self.handler.handle(&mut tx, &events).await?;
            sqlx::query(
                "INSERT INTO event_cursors (consumer, position) VALUES ($1, $2)
                 ON CONFLICT (consumer) DO UPDATE SET position = EXCLUDED.position, update_time = now()",
            )
            .bind(&self.config.name)
            .bind(last_position)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            self.handler.after_commit(after_commit).await;
        }
        Ok(())
    }

    async fn open(
        &self,
        after: i64,
    ) -> Result<tonic::Streaming<WatchEventsResponse>, ConsumeError> {
        let mut grpc = tonic::client::Grpc::new(self.source.channel.clone())
            // One response holds up to 100 events of up to a few thousand changes each.
            .max_decoding_message_size(256 * 1024 * 1024);
        grpc.ready()
            .await
            .map_err(|err| ConsumeError::Connect(err.to_string()))?;
        let mut request = tonic::Request::new(WatchEventsRequest {
            after_position: after,
            tenants: self.config.tenants.clone(),
            type_prefixes: self.config.type_prefixes.clone(),
        });
        let bearer = format!("Bearer {}", self.source.token)
            .parse()
            .map_err(|_| ConsumeError::Connect("token is not a valid header value".into()))?;
        request.metadata_mut().insert("authorization", bearer);
        let path = http::uri::PathAndQuery::from_static(self.source.method);
        let codec = tonic_prost::ProstCodec::<WatchEventsRequest, WatchEventsResponse>::default();
        Ok(grpc
            .server_streaming(request, path, codec)
            .await?
            .into_inner())
    }
}

/// The position a consumer has handled everything up to (0 before its first batch).
pub async fn consumer_position(pool: &PgPool, consumer: &str) -> Result<i64, sqlx::Error> {
    Ok(
        sqlx::query_scalar("SELECT position FROM event_cursors WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(pool)
            .await?
            .unwrap_or(0),
    )
}

#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error("cannot reach the event source: {0}")]
    Connect(String),
    #[error("event stream failed: {0}")]
    Stream(#[from] tonic::Status),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("handler failed: {0}")]
    Handler(#[from] HandlerError),
}
