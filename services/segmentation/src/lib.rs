//! Boomerang's segmentation service: turns ingested history into scores and segments that are always current.
//!
//! In progress (see docs/segmentation.md): this crate holds the scoring domain so far, pure logic with no IO. The
//! gRPC API, live membership in Redis and the event consumer come next.

pub mod domain;
