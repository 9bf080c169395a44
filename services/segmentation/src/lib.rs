//! Boomerang's segmentation service: scores and segments every customer live from ingestion's events.
//!
//! - `domain/`: scoring and segment definitions (pure logic)
//! - `db/`: the projection of ingestion's data, features, membership history, recompute
//! - `cache.rs`: current membership in Redis, with its complete marker
//! - `writer.rs`: the one path that changes memberships (history, events, cache)
//! - `consumer.rs`, `schedule.rs`: what drives the writer (ingestion's events; due dates and recomputes)
//! - `grpc.rs`: the API; `export.rs`: CSV exports

pub mod domain;
