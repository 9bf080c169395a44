//! Segmentation's tables: set-based queries, each in the caller's transaction.

pub mod features;
pub mod memberships;
pub mod projection;
pub mod settings;
