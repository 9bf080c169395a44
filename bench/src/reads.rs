//! Membership reads: GetCustomerSegments at a fixed concurrency through a real `boomerang serve` (auth, the tower
//! stack, the cache's marker check and set read), against `redis-benchmark` GET in the same run, and the same
//! server's health check at the same concurrency as the floor any gRPC call pays here.

use std::time::{Duration, Instant};

use boomerang_proto::segmentation as pb;
use boomerang_proto::segmentation::segmentation_service_client::SegmentationServiceClient;
use boomerang_testkit::unique_name;
use sqlx::{Connection, PgConnection};
use tonic::metadata::{Ascii, MetadataValue};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::report::{ms, quantile};
use crate::server::{self, Server, TENANT};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Customers with memberships in the cache.
    #[arg(long, default_value_t = 100_000)]
    customers: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds each measurement of a round takes.
    #[arg(long, default_value_t = 4)]
    seconds: u64,
    /// Rounds of the three measurements (GetCustomerSegments, the health check, redis-benchmark), each compared
    /// within its round.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// HTTP/2 connections the calls are spread over (as several client replicas would open).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// The server's tokio worker threads (`TOKIO_WORKER_THREADS`). One by default: on two cores that also run this
    /// client and Redis, a second worker only takes turns with them, and the turns are the latency's tail.
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let db = server::database(&["segmentation"]).await?;
    let mut conn = PgConnection::connect(db.url()).await?;
    // Every customer in an RFM group and a lifecycle state; the service finds its cache behind the membership
    // version at its first tick and builds it.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET search_path TO segmentation;
         INSERT INTO features (tenant_id, customer_id, frequency, monetary, purchase_days, segments)
         SELECT '{TENANT}', g, 1, 100, 1, ARRAY[(1 + g % 6)::int2, (11 + g % 5)::int2]
         FROM generate_series(1, {n}) g;
         INSERT INTO membership_versions VALUES ('{TENANT}', 1);
         INSERT INTO rfm_boundaries VALUES ('{TENANT}', 0, '{{0,0,0,0}}', '{{0,0,0,0}}', '{{0,0,0,0}}', now());",
        n = args.customers
    )))
    .execute(&mut conn)
    .await?;
    let prefix = unique_name("bench");
    let server = Server::start(
        db.url(),
        "segmentation",
        8,
        &[
            ("BOOMERANG_REDIS__KEY_PREFIX", prefix.clone()),
            (
                "BOOMERANG_SEGMENTATION__INGESTION_URL",
                "http://127.0.0.1:1".into(),
            ),
            ("BOOMERANG_SEGMENTATION__TICK_MS", "200".into()),
            ("BOOMERANG_TELEMETRY__LOG_LEVEL", "error".into()),
            ("TOKIO_WORKER_THREADS", args.server_threads.to_string()),
        ],
    )
    .await?;
    let redis = redis::Client::open(boomerang_testkit::redis_url())?;
    let mut redis_conn = redis.get_multiplexed_async_connection().await?;
    let ready_key = format!("{prefix}:{{{TENANT}}}:ready");
    crate::cache::wait_complete(&mut redis_conn, &ready_key).await?;

    let token = server::token(&["segmentation.read"])?;
    // The host's speed drifts from minute to minute (other machines share it), so the three are measured side by
    // side in each round and compared within it.
    let mut rounds = Vec::new();
    let mut redis_requests = 100_000 * args.seconds;
    for _ in 0..args.rounds.max(1) {
        let reads = measure(server.address(), &token, &args, Call::CustomerSegments).await?;
        // The floor: the same server, connections and concurrency answering a call with no token, no Redis and no
        // work.
        let floor = measure(server.address(), &token, &args, Call::HealthCheck).await?;
        let redis = redis_benchmark(args.concurrency, redis_requests)?;
        redis_requests = (redis.throughput * args.seconds as f64) as u64;
        rounds.push(Round {
            reads,
            floor,
            redis,
        });
    }
    server.stop()?;
    crate::cache::delete_prefix(&mut redis_conn, &prefix).await?;
    report(&args, rounds);
    Ok(())
}

struct Round {
    reads: Load,
    floor: Load,
    redis: RedisFigures,
}

/// One load's figures: its throughput and every call's latency.
struct Load {
    throughput: f64,
    latencies: Vec<Duration>,
}

struct RedisFigures {
    throughput: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The same machine's raw Redis: `requests` GETs at the same concurrency.
fn redis_benchmark(concurrency: usize, requests: u64) -> anyhow::Result<RedisFigures> {
    let output = std::process::Command::new("redis-benchmark")
        .args(["-t", "get", "--csv", "-c"])
        .arg(concurrency.to_string())
        .arg("-n")
        .arg(requests.to_string())
        .output()?;
    anyhow::ensure!(output.status.success(), "redis-benchmark failed");
    let csv = String::from_utf8(output.stdout)?;
    let row: Vec<f64> = csv
        .lines()
        .find(|line| line.starts_with("\"GET\""))
        .ok_or_else(|| anyhow::anyhow!("no GET line in redis-benchmark output: {csv}"))?
        .split(',')
        .skip(1)
        .map(|field| field.trim_matches('"').parse::<f64>())
        .collect::<Result<_, _>>()?;
    Ok(RedisFigures {
        throughput: row[0],
        p50_ms: row[3],
        p99_ms: row[5],
    })
}

/// Each round's throughputs and ratios, their medians, and the latencies of all rounds together.
fn report(args: &Args, mut rounds: Vec<Round>) {
    println!(
        "{} calls in flight over {} connections, {} server thread(s); {} rounds of {} s per measurement",
        args.concurrency,
        args.connections,
        args.server_threads,
        rounds.len(),
        args.seconds
    );
    println!();
    println!(
        "| round | GetCustomerSegments (p99) | Health/Check, the gRPC floor (p99) | redis-benchmark GET (p99) | ratio to Redis | the floor's ratio |"
    );
    println!("|---|---|---|---|---|---|");
    let ratio = |round: &Round| round.reads.throughput / round.redis.throughput;
    let floor_ratio = |round: &Round| round.floor.throughput / round.redis.throughput;
    for (i, round) in rounds.iter_mut().enumerate() {
        println!(
            "| {} | {:.0}/s ({:.3} ms) | {:.0}/s ({:.3} ms) | {:.0}/s ({:.3} ms) | {:.2} | {:.2} |",
            i + 1,
            round.reads.throughput,
            ms(quantile(&mut round.reads.latencies, 0.99)),
            round.floor.throughput,
            ms(quantile(&mut round.floor.latencies, 0.99)),
            round.redis.throughput,
            round.redis.p99_ms,
            ratio(round),
            floor_ratio(round)
        );
    }
    let median = |of: &dyn Fn(&Round) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(of).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "| median | {:.0}/s | {:.0}/s | {:.0}/s | **{:.2}** | {:.2} |",
        median(&|r| r.reads.throughput),
        median(&|r| r.floor.throughput),
        median(&|r| r.redis.throughput),
        median(&ratio),
        median(&floor_ratio)
    );
    let (redis_p50, redis_p99) = (median(&|r| r.redis.p50_ms), median(&|r| r.redis.p99_ms));
    let mut reads: Vec<Duration> = rounds
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.reads.latencies))
        .collect();
    let mut floor: Vec<Duration> = rounds
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.floor.latencies))
        .collect();
    println!();
    println!(
        "| latency, all rounds | GetCustomerSegments | Health/Check | redis-benchmark GET (median of rounds) |"
    );
    println!("|---|---|---|---|");
    for (name, q, redis) in [
        ("p50", 0.5, Some(redis_p50)),
        ("p90", 0.9, None),
        ("p99", 0.99, Some(redis_p99)),
        ("p99.9", 0.999, None),
    ] {
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {} |",
            ms(quantile(&mut reads, q)),
            ms(quantile(&mut floor, q)),
            redis.map_or(String::new(), |v| format!("{v:.3} ms"))
        );
    }
}

/// What the load calls.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// GetCustomerSegments of a random customer, checked to come from the cache.
    CustomerSegments,
    /// The health service's Check: no token, no Redis, an answer from memory.
    HealthCheck,
}

/// Runs the load on one thread of its own, as redis-benchmark's does: the two cores are shared by this client, the
/// server and Redis, and a client spread over both would take turns with the server on each.
async fn measure(address: &str, token: &str, args: &Args, call: Call) -> anyhow::Result<Load> {
    let (address, token, args) = (address.to_owned(), token.to_owned(), args.clone());
    let (latencies, elapsed) = tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(load(address, token, args, call))
    })
    .await??;
    Ok(Load {
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies,
    })
}

/// `concurrency` callers making `call` until the time is up: every call's latency and the time the whole took.
async fn load(
    address: String,
    token: String,
    args: Args,
    call: Call,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let authorization: MetadataValue<Ascii> = format!("Bearer {token}").parse()?;
    let channels: Vec<_> = (0..args.connections.max(1))
        .map(|_| tonic::transport::Endpoint::from_shared(address.clone()).map(|e| e.connect_lazy()))
        .collect::<Result<_, _>>()?;
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let channel = channels[worker % channels.len()].clone();
        let mut segments = SegmentationServiceClient::new(channel.clone());
        let mut health = HealthClient::new(channel);
        let authorization = authorization.clone();
        let customers = args.customers;
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut n = worker as u64;
            while Instant::now() < deadline {
                n = n
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let customer = 1 + (n >> 33) % customers;
                let started = Instant::now();
                match call {
                    Call::CustomerSegments => {
                        let mut request = tonic::Request::new(pb::GetCustomerSegmentsRequest {
                            customer: format!("tenants/{TENANT}/customers/{customer}"),
                            as_of_time: None,
                        });
                        request
                            .metadata_mut()
                            .insert("authorization", authorization.clone());
                        let response = segments.get_customer_segments(request).await?.into_inner();
                        anyhow::ensure!(
                            response.source == "cache" && response.segments.len() == 2,
                            "{response:?}"
                        );
                    }
                    Call::HealthCheck => {
                        let request = HealthCheckRequest {
                            service: String::new(),
                        };
                        let response = health.check(request).await?.into_inner();
                        anyhow::ensure!(
                            response.status() == ServingStatus::Serving,
                            "{response:?}"
                        );
                    }
                }
                mine.push(started.elapsed());
            }
            Ok(mine)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok((latencies, started.elapsed()))
}
