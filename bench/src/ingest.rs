//! Ingestion throughput: a synthetic retailer through the gRPC API (identity resolution, idempotency and events
//! included), against a raw `COPY` of the same order rows into a bare table.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use boomerang_proto::ingestion as pb;
use boomerang_proto::ingestion::ingestion_service_client::IngestionServiceClient;
use boomerang_service_kit::time::to_timestamp;
use boomerang_synthetic::{Channel, Retailer, Status};
use boomerang_testkit::authed;
use futures::StreamExt;
use sqlx::{Connection, PgConnection};

use crate::report::{ms, peak_rss_mib, quantile};
use crate::server::{self, Server, TENANT};

#[derive(clap::Args)]
pub struct Args {
    /// Orders to ingest.
    #[arg(long, default_value_t = 1_000_000)]
    orders: u64,
    /// Customers they belong to (loaded first).
    #[arg(long, default_value_t = 100_000)]
    customers: u64,
    /// Orders per IngestOrders call.
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let db = server::database(&["ingestion"]).await?;
    let pool_size = (args.concurrency as u32 + 4).max(8);
    let server = Server::start(db.url(), "ingestion", pool_size, &[]).await?;
    let token = server::token(&["ingestion.write"])?;
    let client = IngestionServiceClient::new(server.channel.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let retailer = Retailer::new(args.seed, args.customers, args.orders);
    println!(
        "ingest benchmark: {} orders over {} customers, batches of {}, {} in flight",
        args.orders, args.customers, args.batch, args.concurrency
    );

    // Customers first, so orders resolve to known customers through identity resolution.
    let started = Instant::now();
    let customers = futures::stream::iter(0..args.customers.div_ceil(1_000)).map(|chunk| {
        let mut client = client.clone();
        let token = token.clone();
        let records: Vec<pb::CustomerRecord> = (chunk * 1_000
            ..((chunk + 1) * 1_000).min(args.customers))
            .map(|n| customer_record(&retailer, n))
            .collect();
        async move {
            let request = pb::UpsertCustomersRequest {
                parent: format!("tenants/{TENANT}"),
                customers: records,
                mode: pb::BatchMode::Atomic as i32,
            };
            client
                .upsert_customers(authed(&token, request))
                .await
                .map(drop)
        }
    });
    let results: Vec<_> = customers.buffer_unordered(2).collect().await;
    results.into_iter().collect::<Result<Vec<_>, _>>()?;
    let customer_secs = started.elapsed().as_secs_f64();
    println!(
        "customers: {} in {customer_secs:.1}s = {:.0} customers/s",
        args.customers,
        args.customers as f64 / customer_secs
    );

    // The client's data exists before the clock starts (as a retailer's feed would); encoding, sending and reading
    // the answers are timed.
    let mut batches = Vec::with_capacity(args.orders as usize / args.batch + 1);
    let mut orders = Vec::with_capacity(args.batch);
    for order in retailer.orders() {
        orders.push(order_message(order));
        if orders.len() == args.batch {
            batches.push(std::mem::replace(
                &mut orders,
                Vec::with_capacity(args.batch),
            ));
        }
    }
    if !orders.is_empty() {
        batches.push(orders);
    }
    let batches = Arc::new(Mutex::new(batches.into_iter()));
    let started = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..args.concurrency {
        let batches = batches.clone();
        let mut client = client.clone();
        let token = token.clone();
        callers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut accepted = 0u64;
            loop {
                let Some(orders) = batches.lock().expect("batches").next() else {
                    break;
                };
                let request = pb::IngestOrdersRequest {
                    parent: format!("tenants/{TENANT}"),
                    orders,
                    mode: pb::BatchMode::Atomic as i32,
                };
                let sent = Instant::now();
                let response = client
                    .ingest_orders(authed(&token, request))
                    .await?
                    .into_inner();
                latencies.push(sent.elapsed());
                accepted += response.summary.map_or(0, |s| s.accepted as u64);
            }
            anyhow::Ok((latencies, accepted))
        }));
    }
    let mut latencies = Vec::new();
    let mut accepted = 0;
    for caller in callers {
        let (mut own, count) = caller.await??;
        latencies.append(&mut own);
        accepted += count;
    }
    let elapsed = started.elapsed();
    let server_peak = server.peak_rss_mib();
    server.stop()?;
    let mut conn = PgConnection::connect(db.url()).await?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ingestion.orders")
        .fetch_one(&mut conn)
        .await?;
    anyhow::ensure!(
        accepted == args.orders && stored as u64 == args.orders,
        "expected {} orders, {accepted} accepted and {stored} stored",
        args.orders
    );
    let api_rate = args.orders as f64 / elapsed.as_secs_f64();
    let p50 = quantile(&mut latencies, 0.50);
    let p99 = quantile(&mut latencies, 0.99);
    println!(
        "grpc ingest: {} orders in {:.2}s = {api_rate:.0} orders/s; batch latency p50 {:.1} ms, p99 {:.1} ms; \
         server peak RSS {server_peak:.0} MiB (client {:.0} MiB)",
        args.orders,
        elapsed.as_secs_f64(),
        ms(p50),
        ms(p99),
        peak_rss_mib()
    );

    // Baseline: the same rows, COPY'd by one connection into a bare table (no keys, no indexes).
    let mut csv = Vec::with_capacity(args.orders as usize * 80);
    for order in retailer.orders() {
        use std::io::Write;
        writeln!(
            csv,
            "{},{},{},{}.{:02},EUR,{},{}",
            order.order_id,
            order.customer_id,
            order.placed_at.to_rfc3339(),
            order.amount_minor / 100,
            order.amount_minor % 100,
            order.status.name(),
            order.channel.name()
        )?;
    }
    let mut conn = sqlx::PgConnection::connect(db.url()).await?;
    sqlx::query(
        "CREATE TABLE copy_baseline (order_id text, customer_id text, placed_at timestamptz, amount numeric,
                                     currency text, status text, channel text)",
    )
    .execute(&mut conn)
    .await?;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw("COPY copy_baseline FROM STDIN (FORMAT csv)")
        .await?;
    for chunk in csv.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    let copied = copy.finish().await?;
    let copy_elapsed = started.elapsed();
    let copy_rate = copied as f64 / copy_elapsed.as_secs_f64();
    println!(
        "baseline COPY: {copied} rows in {:.2}s = {copy_rate:.0} rows/s",
        copy_elapsed.as_secs_f64()
    );
    println!("ratio grpc ingest / raw COPY: {:.2}", api_rate / copy_rate);
    Ok(())
}

fn customer_record(retailer: &Retailer, n: u64) -> pb::CustomerRecord {
    let customer = retailer.customer(n);
    let id = |kind: pb::IdentifierKind, value: String| pb::Identifier {
        kind: kind as i32,
        value,
        namespace: String::new(),
    };
    pb::CustomerRecord {
        identifiers: vec![
            id(pb::IdentifierKind::External, customer.external_id),
            id(pb::IdentifierKind::Email, customer.email),
        ],
        given_name: customer.given_name.to_owned(),
        family_name: customer.family_name.to_owned(),
        birth_date: customer.birth_date.to_string(),
        postcode: customer.postcode,
        country: customer.country.to_owned(),
    }
}

fn order_message(order: boomerang_synthetic::Order) -> pb::Order {
    pb::Order {
        order_id: order.order_id,
        customer: Some(pb::Identifier {
            kind: pb::IdentifierKind::External as i32,
            value: order.customer_id,
            namespace: String::new(),
        }),
        channel: match order.channel {
            Channel::Store => pb::Channel::Store,
            Channel::Web => pb::Channel::Web,
            Channel::App => pb::Channel::App,
        } as i32,
        store: order.store,
        place_time: Some(to_timestamp(order.placed_at)),
        status: match order.status {
            Status::Paid => pb::OrderStatus::Paid,
            Status::PartiallyPaid => pb::OrderStatus::PartiallyPaid,
            Status::Pending => pb::OrderStatus::Pending,
            Status::Cancelled => pb::OrderStatus::Cancelled,
            Status::Refunded => pb::OrderStatus::Refunded,
        } as i32,
        amount: Some(pb::Money {
            currency_code: "EUR".into(),
            minor_units: order.amount_minor,
        }),
        lines: Vec::new(),
        customer_name: String::new(),
    }
}
