//! The services this binary can host, and the configuration they read.

use std::path::Path;

use anyhow::Context;
use boomerang_service_kit::config::{DEFAULTS, KitConfig, load as load_layers};
use boomerang_service_kit::{Platform, ServiceBundle, Shutdown};
use serde::Deserialize;

/// A service the binary can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    Ingestion,
    Segmentation,
}

/// Every section any hosted service reads.
#[derive(Debug, Deserialize)]
pub struct Config {
    #[serde(flatten)]
    pub kit: KitConfig,
    pub ingestion: boomerang_ingestion::IngestionConfig,
    pub segmentation: boomerang_segmentation::SegmentationConfig,
}

/// Defaults, then `file`, then the environment.
pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
    Ok(load_layers(
        &[
            DEFAULTS,
            boomerang_ingestion::DEFAULTS,
            boomerang_segmentation::DEFAULTS,
        ],
        file,
    )?)
}

fn bundle(
    platform: &Platform,
    config: &Config,
    service: ServiceName,
) -> anyhow::Result<ServiceBundle> {
    match service {
        ServiceName::Ingestion => Ok(boomerang_ingestion::build(platform, &config.ingestion)?),
        ServiceName::Segmentation => Ok(boomerang_segmentation::build(
            platform,
            &config.segmentation,
        )?),
    }
}

/// Serves `services` on one port until SIGTERM or Ctrl-C.
pub async fn serve(config: &Config, services: &[ServiceName]) -> anyhow::Result<()> {
    let _telemetry = boomerang_telemetry::init(&config.kit.telemetry, "boomerang")?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let platform = Platform::new(config.kit.clone(), shutdown.clone())
        .context("set auth.secret (BOOMERANG_AUTH__SECRET) to a secret of at least 32 bytes")?;
    let mut bundles = Vec::new();
    for service in services {
        bundles.push(bundle(&platform, config, *service)?);
    }
    let addr = config.kit.server.listen_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    boomerang_service_kit::serve(
        &config.kit.server,
        listener,
        platform.keys.clone(),
        bundles,
        shutdown,
    )
    .await?;
    Ok(())
}

/// Creates or upgrades every service's schema.
#[allow(clippy::print_stdout)]
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    boomerang_service_kit::db::ensure_database(&config.kit.postgres.url)
        .await
        .with_context(|| {
            format!(
                "cannot reach or create the database at {}",
                redact(&config.kit.postgres.url)
            )
        })?;
    let url = redact(&config.kit.postgres.url);
    let pool = boomerang_service_kit::db::pool(&config.kit.postgres, boomerang_ingestion::SCHEMA)?;
    boomerang_ingestion::migrate(&pool)
        .await
        .with_context(|| format!("migrating {} at {url}", boomerang_ingestion::SCHEMA))?;
    println!("migrated: {}", boomerang_ingestion::SCHEMA);
    let pool = segmentation_pool(config)?;
    boomerang_segmentation::migrate(&pool)
        .await
        .with_context(|| format!("migrating {} at {url}", boomerang_segmentation::SCHEMA))?;
    println!("migrated: {}", boomerang_segmentation::SCHEMA);
    Ok(())
}

/// A pool on segmentation's schema, for operator commands.
pub fn segmentation_pool(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    Ok(boomerang_service_kit::db::pool(
        &config.kit.postgres,
        boomerang_segmentation::SCHEMA,
    )?)
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
