//! The service under test, run as the real `boomerang` binary in its own process, so its memory is measured on its
//! own and the benchmark client does not share its address space.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use boomerang_auth::TokenKeys;
use boomerang_testkit::{TEST_SECRET, TestDb};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The benchmarks' tenant.
pub const TENANT: &str = "bench";

/// A fresh database with the schemas of `services` (`ingestion`, `segmentation`) migrated.
pub async fn database(services: &[&str]) -> anyhow::Result<TestDb> {
    let db = TestDb::new().await;
    for service in services {
        match *service {
            "ingestion" => {
                boomerang_ingestion::migrate(&db.pool(boomerang_ingestion::SCHEMA)).await?
            }
            "segmentation" => {
                boomerang_segmentation::migrate(&db.pool(boomerang_segmentation::SCHEMA)).await?
            }
            other => anyhow::bail!("no service {other}"),
        }
    }
    Ok(db)
}

/// A token for the benchmarks' tenant with `scopes`, signed with the secret the server is started with.
pub fn token(scopes: &[&str]) -> anyhow::Result<String> {
    let keys = TokenKeys::from_secret(TEST_SECRET.as_bytes())?;
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    Ok(keys.mint(
        "bench",
        &[TENANT.to_owned()],
        &scopes,
        Duration::from_secs(3600),
    )?)
}

/// A running `boomerang serve`.
pub struct Server {
    child: Child,
    pub channel: Channel,
    address: String,
}

impl Server {
    /// Starts `boomerang serve --services <services>` against `database_url` and waits until it is ready. The binary
    /// is the one built beside this benchmark (`cargo build --release -p boomerang -p boomerang-bench`).
    pub async fn start(
        database_url: &str,
        services: &str,
        pool_size: u32,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let binary: PathBuf = std::env::current_exe()?
            .parent()
            .context("benchmark binary has a directory")?
            .join("boomerang");
        anyhow::ensure!(
            binary.exists(),
            "{} is missing: build it with `cargo build --release -p boomerang -p boomerang-bench`",
            binary.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(&binary)
            .args(["serve", "--services", services])
            .env("BOOMERANG_POSTGRES__URL", database_url)
            .env("BOOMERANG_POSTGRES__MAX_CONNECTIONS", pool_size.to_string())
            .env("BOOMERANG_AUTH__SECRET", TEST_SECRET)
            .env("BOOMERANG_SERVER__LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("BOOMERANG_SERVER__SHUTDOWN_DELAY_MS", "0")
            .env("BOOMERANG_TELEMETRY__LOG_LEVEL", "warn")
            // Segmentation, when served, reads ingestion's events from this same process.
            .env(
                "BOOMERANG_SEGMENTATION__INGESTION_URL",
                format!("http://127.0.0.1:{port}"),
            )
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let address = format!("http://127.0.0.1:{port}");
        let channel = tonic::transport::Endpoint::from_shared(address.clone())?.connect_lazy();
        let mut server = Self {
            child,
            channel,
            address,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// The server's address, for clients of its own to connect to (`channel` is one shared connection).
    pub fn address(&self) -> &str {
        &self.address
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let mut health = HealthClient::new(self.channel.clone());
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("boomerang serve exited early: {status}");
            }
            let request = HealthCheckRequest {
                service: String::new(),
            };
            if let Ok(response) = health.check(request).await
                && response.into_inner().status() == ServingStatus::Serving
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("boomerang serve did not become ready within 10s")
    }

    /// Peak resident memory of the server process so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        crate::report::peak_rss_mib_of(&format!("/proc/{}/status", self.child.id()))
    }

    /// Resets the peak resident memory to the current one, so the next figure covers only what follows.
    pub fn reset_peak_rss(&self) -> anyhow::Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5")?;
        Ok(())
    }

    /// Stops the server the way Kubernetes would (SIGTERM) and waits for it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
