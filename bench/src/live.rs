//! The live path: orders at a steady rate through ingestion's IngestOrders, and the time from each call's
//! acknowledgement to the moment segmentation's cache holds the buyer's new membership (seen as a Redis keyspace
//! notification on the customer's key). Both services run in one real `boomerang serve`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boomerang_proto::ingestion as pb;
use boomerang_proto::ingestion::ingestion_service_client::IngestionServiceClient;
use boomerang_service_kit::time::to_timestamp;
use boomerang_testkit::{authed, unique_name};
use chrono::Utc;
use futures::StreamExt;
use sqlx::{Connection, PgConnection};

use crate::report::{ms, quantile};
use crate::server::{self, Server, TENANT};

#[derive(clap::Args)]
pub struct Args {
    /// Orders per second.
    #[arg(long, default_value_t = 2_000)]
    rate: u64,
    /// Orders per IngestOrders call.
    #[arg(long, default_value_t = 100)]
    batch: u64,
    /// Seconds measured.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of the same traffic before the measured ones (new connections, first plans), not measured.
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
}

fn order(id: String, customer: String, amount: i64) -> pb::Order {
    pb::Order {
        order_id: id,
        customer: Some(pb::Identifier {
            kind: pb::IdentifierKind::External as i32,
            value: customer,
            namespace: String::new(),
        }),
        channel: pb::Channel::Web as i32,
        place_time: Some(to_timestamp(Utc::now() - chrono::Duration::hours(1))),
        status: pb::OrderStatus::Paid as i32,
        amount: Some(pb::Money {
            currency_code: "EUR".into(),
            minor_units: amount,
        }),
        ..Default::default()
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let db = server::database(&["ingestion", "segmentation"]).await?;
    let prefix = unique_name("bench");
    let server = Server::start(
        db.url(),
        "ingestion,segmentation",
        16,
        &[
            ("BOOMERANG_REDIS__KEY_PREFIX", prefix.clone()),
            ("BOOMERANG_SEGMENTATION__TICK_MS", "1000".into()),
        ],
    )
    .await?;
    let token = server::token(&["ingestion.write"])?;
    let client = IngestionServiceClient::new(server.channel.clone());
    let ingest = |orders: Vec<pb::Order>| {
        let mut client = client.clone();
        let token = token.clone();
        async move {
            let response = client
                .ingest_orders(authed(
                    &token,
                    pb::IngestOrdersRequest {
                        parent: format!("tenants/{TENANT}"),
                        orders,
                        mode: 0,
                    },
                ))
                .await?
                .into_inner();
            anyhow::ensure!(
                response.summary.is_some_and(|s| s.invalid == 0),
                "orders refused"
            );
            Ok(Instant::now())
        }
    };

    // Warm up: a population, its first RFM boundaries and a complete cache.
    let warm: Vec<pb::Order> = (0..2_000)
        .map(|i| order(format!("W{i}"), format!("W{i}"), 1_000 + i))
        .collect();
    for chunk in warm.chunks(500) {
        ingest(chunk.to_vec()).await?;
    }
    let redis = redis::Client::open(boomerang_testkit::redis_url())?;
    let mut redis_conn = redis.get_multiplexed_async_connection().await?;
    let ready_key = format!("{prefix}:{{{TENANT}}}:ready");
    tokio::time::timeout(
        Duration::from_secs(60),
        crate::cache::wait_complete(&mut redis_conn, &ready_key),
    )
    .await??;

    // Every set operation on a customer key of this run is announced; the first one per new customer is the update.
    let previous: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query_async(&mut redis_conn)
        .await?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Ks")
        .exec_async(&mut redis_conn)
        .await?;
    let mut pubsub = redis.get_async_pubsub().await?;
    let pattern = format!("__keyspace@0__:{prefix}:{{{TENANT}}}:c:*");
    pubsub.psubscribe(&pattern).await?;
    let seen: Arc<Mutex<HashMap<i64, Instant>>> = Default::default();
    let listener = tokio::spawn({
        let seen = seen.clone();
        async move {
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let at = Instant::now();
                let channel = message.get_channel_name();
                if let Some(id) = channel
                    .rsplit(':')
                    .next()
                    .and_then(|id| id.parse::<i64>().ok())
                {
                    seen.lock().expect("seen").entry(id).or_insert(at);
                }
            }
        }
    });

    // Orders at the rate, each the first of a new customer (who enters lifecycle-new and an RFM group): first the
    // warm-up's customers (U…), then the measured ones (L…), without a pause between them.
    let warmup = args.rate * args.warmup_seconds / args.batch;
    let batches = args.rate * args.seconds / args.batch;
    let interval = Duration::from_secs_f64(args.batch as f64 / args.rate as f64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let acks: Arc<Mutex<HashMap<String, Instant>>> = Default::default();
    let mut started = Instant::now();
    let mut calls = Vec::new();
    for b in 0..warmup + batches {
        ticker.tick().await;
        let (prefix, b) = if b < warmup {
            ("U", b)
        } else {
            if b == warmup {
                started = Instant::now();
            }
            ("L", b - warmup)
        };
        let externals: Vec<String> = (0..args.batch)
            .map(|i| format!("{prefix}{}", b * args.batch + i))
            .collect();
        let orders: Vec<pb::Order> = externals
            .iter()
            .enumerate()
            .map(|(i, external)| {
                order(
                    external.clone(),
                    external.clone(),
                    2_000 + (i as i64 * 37) % 5_000,
                )
            })
            .collect();
        let acks = (prefix == "L").then(|| acks.clone());
        let call = ingest(orders);
        calls.push(tokio::spawn(async move {
            let at = call.await?;
            if let Some(acks) = acks {
                let mut acks = acks.lock().expect("acks");
                for external in externals {
                    acks.insert(external, at);
                }
            }
            anyhow::Ok(())
        }));
    }
    for call in calls {
        call.await??;
    }
    let sent = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    listener.abort();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg(previous.get(1).cloned().unwrap_or_default())
        .exec_async(&mut redis_conn)
        .await?;

    let mut conn = PgConnection::connect(db.url()).await?;
    let ids: Vec<(String, i64)> = sqlx::query_as(
        "SELECT value, customer_id FROM ingestion.identifiers WHERE tenant_id = $1 AND kind = 1 AND value LIKE 'L%'",
    )
    .bind(TENANT)
    .fetch_all(&mut conn)
    .await?;
    let seen = seen.lock().expect("seen").clone();
    let acks = acks.lock().expect("acks").clone();
    let mut latencies = Vec::with_capacity(ids.len());
    let mut missing = 0;
    for (external, id) in &ids {
        match (acks.get(external), seen.get(id)) {
            (Some(ack), Some(at)) => latencies.push(at.saturating_duration_since(*ack)),
            _ => missing += 1,
        }
    }
    let orders = batches * args.batch;
    println!("| measure | figure |");
    println!("|---|---|");
    println!(
        "| orders sent | {orders} in {:.1} s ({:.0}/s, batches of {}), after {} s of the same traffic |",
        sent.as_secs_f64(),
        orders as f64 / sent.as_secs_f64(),
        args.batch,
        args.warmup_seconds
    );
    println!(
        "| customers whose cache update was seen | {} (missing {missing}) |",
        latencies.len()
    );
    println!(
        "| ack → cache p50 | {:.1} ms |",
        ms(quantile(&mut latencies, 0.5))
    );
    println!(
        "| ack → cache p99 | {:.1} ms |",
        ms(quantile(&mut latencies, 0.99))
    );
    println!(
        "| ack → cache max | {:.1} ms |",
        ms(quantile(&mut latencies, 1.0))
    );
    println!("| server peak RSS | {:.0} MiB |", server.peak_rss_mib());
    server.stop()?;
    crate::cache::delete_prefix(&mut redis_conn, &prefix).await?;
    Ok(())
}
