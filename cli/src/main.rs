//! `boomerang`: the all-in-one binary. It serves any subset of the services in one process (for local use and small
//! retailers; on Kubernetes each service runs its own binary), and carries the operator commands: migrate, import,
//! token, demo, export.
#![allow(clippy::print_stdout)] // a command-line tool talks on stdout

mod services;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use boomerang_auth::{TenantId, TokenKeys};
use boomerang_ingestion::import::rows::CustomerColumn;
use boomerang_ingestion::import::{Format, ImportOptions, ItemKind};
use clap::{Parser, Subcommand};
use services::{Config, ServiceName};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "boomerang",
    version,
    about = "Boomerang customer-retention platform"
)]
struct Cli {
    /// TOML file overriding the defaults (environment variables BOOMERANG_<SECTION>__<KEY> override both).
    #[arg(long, global = true, env = "BOOMERANG_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve services on one port (all of them unless --services names some).
    Serve {
        #[arg(long, value_delimiter = ',', default_value = "ingestion,segmentation")]
        services: Vec<ServiceName>,
    },
    /// Create or upgrade every service's schema.
    Migrate,
    /// Import a CSV or NDJSON file through a running ingestion service.
    Import(ImportArgs),
    /// Write segmentation data as CSV (the hand-off to an email tool), to stdout unless --output is given.
    Export(ExportArgs),
    /// Mint a bearer token signed with the configured auth.secret.
    Token {
        /// Tenant the token may act for; repeat for several, or `*` for all.
        #[arg(long = "tenant", required = true)]
        tenants: Vec<String>,
        /// Scope such as ingestion.write, ingestion.* or *; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Days the token stays valid.
        #[arg(long, default_value_t = 30)]
        ttl_days: u64,
        /// Who holds the token, for logs.
        #[arg(long, default_value = "operator")]
        subject: String,
    },
    /// Write a synthetic retailer as import files (customers.csv, orders.csv, transactions.csv, events.csv).
    Demo {
        /// Directory to write into.
        dir: PathBuf,
        #[arg(long, default_value_t = 2_000)]
        customers: u64,
        #[arg(long, default_value_t = 20_000)]
        orders: u64,
        #[arg(long, default_value_t = 10_000)]
        transactions: u64,
        #[arg(long, default_value_t = 5_000)]
        events: u64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

/// What to export.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportKind {
    /// customer_id,recency_days,frequency,monetary,r,f,m,rfm,group, scored as of --as-of (default today).
    Rfm,
    /// customer_id,segment,enter_time,reason of --segment, as of --as-of (default now).
    Members,
    /// customer_id,frequency,recency,T,monetary_value,p_alive,expected_purchases,expected_order_value,
    /// predicted_value from the fitted models, as of --as-of (default today).
    Predictions,
}

#[derive(clap::Args)]
struct ExportArgs {
    kind: ExportKind,
    #[arg(long)]
    tenant: String,
    /// Segment id, for example lifecycle-dormant, rfm-loyal or a custom segment's id (members only).
    #[arg(long)]
    segment: Option<String>,
    /// YYYY-MM-DD (UTC; the end of that day), in the years 1 to 9999.
    #[arg(long, value_parser = as_of_date)]
    as_of: Option<chrono::NaiveDate>,
    /// File to write; stdout by default.
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// What the file holds.
    kind: ItemKind,
    /// The file: CSV with a header line, or NDJSON (.ndjson/.jsonl); see docs/import.md for the columns.
    file: PathBuf,
    /// The tenant to import into.
    #[arg(long)]
    tenant: String,
    /// File format; by default guessed from the extension.
    #[arg(long)]
    format: Option<Format>,
    /// How customer_id columns name customers: external (the retailer's own id, the default), email, phone,
    /// loyalty_card, web_account, pos_customer, or partner:NAMESPACE. A customer_kind column overrides it per row.
    #[arg(long, default_value = "external")]
    customer_kind: CustomerColumn,
    /// Rows per chunk (at most the server's [ingestion] max_batch_items).
    #[arg(long, default_value_t = 1_000)]
    chunk_size: usize,
    /// Parallel streams (customer files always use one).
    #[arg(long, default_value_t = 2)]
    parallel: usize,
    /// Where rejected rows go; by default FILE.rejects.csv beside the file.
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// The ingestion service.
    #[arg(
        long,
        env = "BOOMERANG_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// Bearer token with ingestion.write on the tenant; by default one is minted from the configured auth.secret.
    #[arg(long, env = "BOOMERANG_TOKEN")]
    token: Option<String>,
    /// No progress bar (for logs and scripts).
    #[arg(long)]
    no_progress: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { services } => {
            services::serve(&services::load(cli.config.as_deref())?, &services).await
        }
        Command::Migrate => services::migrate(&services::load(cli.config.as_deref())?).await,
        Command::Import(args) => import(cli.config.as_deref(), args).await,
        Command::Export(args) => export(cli.config.as_deref(), args).await,
        Command::Token {
            tenants,
            scopes,
            ttl_days,
            subject,
        } => {
            let config = services::load(cli.config.as_deref())?;
            let keys = keys(&config)?;
            let token = keys.mint(
                &subject,
                &tenants,
                &scopes,
                Duration::from_secs(ttl_days * 86_400),
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Demo {
            dir,
            customers,
            orders,
            transactions,
            events,
            seed,
        } => {
            boomerang_synthetic::Retailer::new(seed, customers, orders)
                .write_csv(&dir, transactions, events)
                .with_context(|| format!("cannot write demo files into {}", dir.display()))?;
            println!(
                "wrote customers.csv, orders.csv, transactions.csv and events.csv into {}",
                dir.display()
            );
            Ok(())
        }
    }
}

fn keys(config: &Config) -> anyhow::Result<TokenKeys> {
    TokenKeys::from_secret(config.kit.auth.secret.as_bytes()).context(
        "set auth.secret (BOOMERANG_AUTH__SECRET) to the secret the services verify tokens with",
    )
}

async fn export(config: Option<&std::path::Path>, args: ExportArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(&args.tenant).map_err(|err| anyhow::anyhow!("--tenant: {err}"))?;
    anyhow::ensure!(
        args.segment.is_none() || matches!(args.kind, ExportKind::Members),
        "--segment is for a members export; the rfm and predictions exports cover every scored customer"
    );
    let pool = services::segmentation_pool(&services::load(config)?)?;
    let out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let rows = match args.kind {
        ExportKind::Rfm => {
            let as_of = args
                .as_of
                .unwrap_or_else(|| chrono::Utc::now().date_naive());
            boomerang_segmentation::export::rfm(&pool, tenant.as_str(), as_of, out).await?
        }
        ExportKind::Members => {
            let segment = args
                .segment
                .context("--segment is required for a members export")?;
            // The end of the day: the next day's midnight, which `as_of_date` makes sure exists, less a microsecond.
            let as_of = args
                .as_of
                .and_then(|day| day.succ_opt()?.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc() - chrono::Duration::microseconds(1));
            boomerang_segmentation::export::members(&pool, tenant.as_str(), &segment, as_of, out)
                .await?
        }
        ExportKind::Predictions => {
            let as_of = args
                .as_of
                .unwrap_or_else(|| chrono::Utc::now().date_naive());
            boomerang_segmentation::export::predictions(&pool, tenant.as_str(), as_of, out).await?
        }
    };
    if let Some(path) = &args.output {
        println!("wrote {rows} rows to {}", path.display());
    }
    Ok(())
}

async fn import(config: Option<&std::path::Path>, args: ImportArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(&args.tenant).map_err(|err| anyhow::anyhow!("--tenant: {err}"))?;
    let token = match args.token {
        Some(token) => token,
        None => keys(&services::load(config)?)?.mint(
            "boomerang-import",
            &[tenant.as_str().to_owned()],
            &["ingestion.write".to_owned()],
            Duration::from_secs(24 * 3600),
        )?,
    };
    let channel = tonic::transport::Endpoint::from_shared(args.server.clone())?
        .connect()
        .await
        .with_context(|| format!("cannot reach the ingestion service at {}", args.server))?;
    let rejects = args.rejects.unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".rejects.csv");
        PathBuf::from(name)
    });
    let options = ImportOptions {
        kind: args.kind,
        format: args.format.unwrap_or_else(|| Format::of(&args.file)),
        file: args.file,
        tenant,
        customer_column: args.customer_kind,
        chunk_size: args.chunk_size,
        parallel: args.parallel,
        rejects: rejects.clone(),
        show_progress: !args.no_progress,
    };
    let summary = boomerang_ingestion::import::import(channel, &token, options).await?;
    println!("{summary}");
    if summary.invalid + summary.refused > 0 {
        println!("rejected rows and their reasons: {}", rejects.display());
    }
    Ok(())
}

/// An `--as-of` date: YYYY-MM-DD in the years 1 to 9999, as the service's times are.
fn as_of_date(value: &str) -> Result<chrono::NaiveDate, String> {
    let day = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map_err(|err| format!("{err}; write the date as YYYY-MM-DD"))?;
    if (1..=9999).contains(&chrono::Datelike::year(&day)) {
        Ok(day)
    } else {
        Err("must be in the years 1 to 9999".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_dates_are_days_the_service_can_hold() {
        assert_eq!(
            as_of_date("2026-12-01"),
            Ok(chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap())
        );
        assert_eq!(
            as_of_date("9999-12-31"),
            Ok(chrono::NaiveDate::from_ymd_opt(9999, 12, 31).unwrap())
        );
        // Past the years the service holds: among them the last day chrono knows, which has no next day and so no
        // end of day to export as of.
        assert_eq!(
            as_of_date("+262142-12-31"),
            Err("must be in the years 1 to 9999".to_owned())
        );
        assert_eq!(
            as_of_date("0000-06-01"),
            Err("must be in the years 1 to 9999".to_owned())
        );
        assert!(
            as_of_date("2026-13-01")
                .unwrap_err()
                .ends_with("write the date as YYYY-MM-DD")
        );
    }
}
