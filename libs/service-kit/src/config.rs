//! Layered configuration: compiled-in defaults (the commented `config/default.toml` files), then an optional TOML
//! file, then `BOOMERANG_<SECTION>__<KEY>` environment variables.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use boomerang_telemetry::TelemetryConfig;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The platform defaults, shared by every binary.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// Loads a configuration: `defaults` in order (usually [`DEFAULTS`] and the services' own defaults), then `file` if
/// given, then the environment.
pub fn load<T: DeserializeOwned>(
    defaults: &[&str],
    file: Option<&Path>,
) -> Result<T, Box<figment::Error>> {
    let mut figment = Figment::new();
    for layer in defaults {
        figment = figment.merge(Toml::string(layer));
    }
    if let Some(file) = file {
        figment = figment.merge(Toml::file_exact(file));
    }
    figment
        .merge(Env::prefixed("BOOMERANG_").split("__"))
        .extract()
        .map_err(Box::new)
}

/// The sections every service reads.
#[derive(Debug, Clone, Deserialize)]
pub struct KitConfig {
    pub server: ServerConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    pub auth: AuthConfig,
    pub telemetry: TelemetryConfig,
}

/// `[server]`: the gRPC server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen_addr: SocketAddr,
    pub request_timeout_ms: u64,
    pub concurrency_limit: usize,
    pub max_message_bytes: usize,
    pub readiness_interval_ms: u64,
    pub shutdown_delay_ms: u64,
    pub shutdown_grace_ms: u64,
}

impl ServerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn readiness_interval(&self) -> Duration {
        Duration::from_millis(self.readiness_interval_ms)
    }
    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_millis(self.shutdown_delay_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

/// `[postgres]`: the source of truth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    pub url: String,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

/// `[redis]`: the cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    pub url: String,
    pub key_prefix: String,
}

/// `[auth]`: bearer tokens.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub secret: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_files_override_them() {
        let dir = std::env::temp_dir().join(format!("boomerang-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("override.toml");
        std::fs::write(&file, "[server]\nconcurrency_limit = 7\n").unwrap();

        let defaults: KitConfig = load(&[DEFAULTS], None).unwrap();
        assert_eq!(defaults.server.listen_addr.port(), 50051);
        let overridden: KitConfig = load(&[DEFAULTS], Some(&file)).unwrap();
        assert_eq!(overridden.server.concurrency_limit, 7);
        assert_eq!(
            overridden.server.request_timeout_ms,
            defaults.server.request_timeout_ms
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_keys_in_a_section_are_rejected() {
        let err =
            load::<KitConfig>(&[DEFAULTS, "[server]\nconcurency_limit = 7\n"], None).unwrap_err();
        assert!(err.to_string().contains("concurency_limit"), "{err}");
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        assert!(
            load::<KitConfig>(&[DEFAULTS], Some(Path::new("/nonexistent/boomerang.toml"))).is_err()
        );
    }
}
