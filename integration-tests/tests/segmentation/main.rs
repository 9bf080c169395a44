//! Segmentation end to end, in one test binary: ingestion and segmentation wired together over the real event
//! backbone, Postgres and Redis.

mod env;
mod memberships;
mod models;
mod rules;
