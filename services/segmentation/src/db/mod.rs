//! Segmentation's tables: set-based queries, each in the caller's transaction.

pub mod custom;
pub mod features;
pub mod memberships;
pub mod models;
pub mod projection;
pub mod scoring;
pub mod settings;
