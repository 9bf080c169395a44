//! The `[segmentation]` configuration section.

use std::time::Duration;

use serde::Deserialize;

/// Segmentation's defaults: the commented reference in `config/default.toml`.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentationConfig {
    pub ingestion_url: String,
    pub tenants: Vec<String>,
    pub tick_ms: u64,
    pub recompute_interval_minutes: u64,
    pub fit_interval_hours: u64,
    pub event_retention_hours: u64,
    pub resident_customers: usize,
}

impl SegmentationConfig {
    pub fn tick(&self) -> Duration {
        Duration::from_millis(self.tick_ms)
    }

    pub fn recompute_interval(&self) -> Duration {
        Duration::from_secs(self.recompute_interval_minutes * 60)
    }

    pub fn fit_interval(&self) -> Duration {
        Duration::from_secs(self.fit_interval_hours * 3600)
    }

    pub fn event_retention(&self) -> Duration {
        Duration::from_secs(self.event_retention_hours * 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Section {
        segmentation: SegmentationConfig,
    }

    #[test]
    fn the_reference_config_is_the_default() {
        let section: Section = boomerang_service_kit::config::load(&[DEFAULTS], None).unwrap();
        assert_eq!(section.segmentation.tick(), Duration::from_secs(15));
    }
}
