//! `boomerang-bench`: benchmarks that print figures, each with a baseline measured in the same run on the same
//! machine. Run them in release mode (see docs/benchmarks.md for the commands and the recorded figures).
#![allow(clippy::print_stdout)] // a benchmark reports on stdout

mod cache;
mod ingest;
mod live;
mod reads;
mod recompute;
mod report;
mod rules;
mod server;

use clap::{Parser, Subcommand};

/// The allocator the binaries use, so the client's share of the machine is what a Boomerang client's would be.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "boomerang-bench", about = "Boomerang benchmarks")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Ingest a synthetic retailer through the gRPC API, against a raw COPY of the same rows.
    Ingest(ingest::Args),
    /// Full recompute of a synthetic tenant's segments, against the RFM one SQL query computes.
    Recompute(recompute::Args),
    /// GetCustomerSegments reads at a fixed concurrency, against redis-benchmark GET and the server's health check.
    Reads(reads::Args),
    /// Orders at a steady rate through ingestion; time from acknowledgement to segmentation's cache update.
    Live(live::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Ingest(args) => ingest::run(args).await,
        Bench::Recompute(args) => recompute::run(args).await,
        Bench::Reads(args) => reads::run(args).await,
        Bench::Live(args) => live::run(args).await,
    }
}
