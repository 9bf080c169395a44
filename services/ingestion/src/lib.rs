//! Boomerang's ingestion service: turns a retailer's customers, orders, spend data, engagement and consent into one
//! clean customer record per person, and publishes every change as events.
//!
//! - `domain/`: validation, normalisation and identity resolution (pure logic)
//! - `db/`: set-based queries, one transaction per batch, events written to the outbox in the same transaction
//! - `grpc.rs`: the API: authorization, validation, results per item
//! - `import/`: the client side of bulk import (CSV and NDJSON files through the Import stream)

mod app;
pub mod config;
mod db;
pub mod domain;
mod error;
mod grpc;
pub mod import;

pub use app::{SCHEMA, SERVICE_NAME, WATCH_EVENTS, build, migrate, pool};
pub use config::{DEFAULTS, IngestionConfig};
pub use grpc::{ERASE, READ, WRITE};
