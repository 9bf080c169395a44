//! Boomerang's event backbone.
//!
//! A service that changes state writes its events into its own outbox table in the same transaction
//! ([`Outbox::publish`]). A [sequencer](run_sequencer) gives committed events their stream positions, and
//! [`EventFeed`] serves them through the service's `WatchEvents` RPC. A [`Consumer`] in another service keeps its
//! cursor in its own tables, updated in the same transaction as its effects, so after a crash it resumes where its
//! last committed batch ended: delivery is at-least-once, effects are exactly-once.
//!
//! # Why positions are stamped after commit
//!
//! A sequence number taken at insert time is not commit order: a transaction that inserted position 5 can commit
//! after one that inserted 6, and a reader that already moved its cursor to 6 would never see 5. Here writers insert
//! rows without a position; the sequencer stamps committed rows with consecutive positions under a row lock, in
//! insert order. A stamp becomes visible only when the sequencer commits, and each stamp starts after the previous
//! one committed, so a reader that sees position P also sees every position below P. A late commit simply gets a
//! later position.

mod consumer;
mod feed;
mod outbox;
mod sequencer;

pub use consumer::{
    Consumer, ConsumerConfig, EventHandler, EventSource, HandlerError, consumer_position,
};
pub use feed::EventFeed;
pub use outbox::{NewEvent, Outbox};
pub use sequencer::run_sequencer;

/// Creates the outbox and cursor tables in the schema `pool` is confined to. Tracked in its own migrations table so
/// it runs beside the service's own migrations.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name("_events_migrations");
    migrator.run(pool).await
}

/// An event's payload is missing or not of the expected type.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("event {0} has no payload")]
    Missing(String),
    #[error("event {event_id} payload: {source}")]
    Decode {
        event_id: String,
        source: prost::DecodeError,
    },
}

/// Unpacks an event payload of type `M`.
pub fn decode_payload<M: prost::Name + Default>(
    event: &boomerang_proto::events::Event,
) -> Result<M, PayloadError> {
    let any = event
        .payload
        .as_ref()
        .ok_or_else(|| PayloadError::Missing(event.id.clone()))?;
    any.to_msg::<M>().map_err(|source| PayloadError::Decode {
        event_id: event.id.clone(),
        source,
    })
}
