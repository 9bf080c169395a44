//! The `[ingestion]` configuration section.

use std::time::Duration;

use serde::Deserialize;

/// Ingestion's defaults: the commented reference in `config/default.toml`.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestionConfig {
    /// Most items in one batch call or import chunk.
    pub max_batch_items: usize,
    /// How long events stay in the outbox.
    pub event_retention_hours: u64,
}

impl IngestionConfig {
    pub fn event_retention(&self) -> Duration {
        Duration::from_secs(self.event_retention_hours * 3600)
    }
}

/// A file holding an `[ingestion]` section.
#[derive(Debug, Clone, Deserialize)]
pub struct Section {
    pub ingestion: IngestionConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_config_is_the_default() {
        let section: Section = boomerang_service_kit::config::load(&[DEFAULTS], None).unwrap();
        assert_eq!(section.ingestion.max_batch_items, 5000);
    }
}
