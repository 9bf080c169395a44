//! The segmentation service on its own, as it runs in its Kubernetes Deployment.

use anyhow::Context;
use boomerang_service_kit::config::{DEFAULTS, KitConfig, load};
use boomerang_service_kit::{Platform, Shutdown};
use clap::Parser;
use serde::Deserialize;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[derive(Parser)]
#[command(about = "Boomerang segmentation service")]
struct Args {
    /// TOML file overriding the defaults (environment variables override both).
    #[arg(long, env = "BOOMERANG_CONFIG")]
    config: Option<std::path::PathBuf>,
}

#[derive(Deserialize)]
struct Config {
    #[serde(flatten)]
    kit: KitConfig,
    segmentation: boomerang_segmentation::SegmentationConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: Config = load(
        &[DEFAULTS, boomerang_segmentation::DEFAULTS],
        args.config.as_deref(),
    )?;
    let _telemetry = boomerang_telemetry::init(&config.kit.telemetry, "boomerang-segmentation")?;
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let platform = Platform::new(config.kit, shutdown.clone()).context("auth.secret")?;
    let bundle = boomerang_segmentation::build(&platform, &config.segmentation)?;
    let listener = tokio::net::TcpListener::bind(platform.config.server.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", platform.config.server.listen_addr))?;
    boomerang_service_kit::serve(
        &platform.config.server,
        listener,
        platform.keys.clone(),
        vec![bundle],
        shutdown,
    )
    .await?;
    Ok(())
}
