//! Boomerang's segmentation service: scores and segments every customer live from ingestion's events.
//!
//! - `domain/`: scoring and segment definitions (pure logic)
//! - `db/`: the projection of ingestion's data, features, membership history
//! - `cache.rs`: current membership in Redis, with its complete marker; `catalogue.rs`: segment names on reads
//! - `population.rs`: a tenant's customers in memory, and the copies kept between full recomputes
//! - `writer.rs`: the one path that changes memberships (history, events, cache), custom segments included
//! - `consumer.rs`, `schedule.rs`: what drives the writer (ingestion's events; due dates, recomputes, model fits,
//!   rebuilds); `predictions.rs`: fitting the prediction models
//! - `grpc.rs`: the API; `export.rs`: CSV exports

mod app;
mod cache;
mod catalogue;
pub mod config;
mod consumer;
mod db;
pub mod domain;
pub mod export;
mod grpc;
mod population;
mod predictions;
mod schedule;
mod tenant_locks;
mod writer;

pub use app::{SCHEMA, SERVICE_NAME, build, migrate, pool};
pub use config::{DEFAULTS, SegmentationConfig};
pub use grpc::{READ, WRITE};
