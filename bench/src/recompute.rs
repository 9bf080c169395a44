//! Full recompute of a tenant's segments (RFM boundaries from the whole population, every customer re-evaluated,
//! the membership diff written to Postgres and Redis) through the Recompute RPC of a real `boomerang serve`,
//! against the RFM a user would compute with one SQL query (`ntile`) over the same orders.

use std::time::{Duration, Instant};

use boomerang_proto::segmentation as pb;
use boomerang_proto::segmentation::segmentation_service_client::SegmentationServiceClient;
use boomerang_synthetic::{Channel, Retailer, Status};
use boomerang_testkit::{authed, unique_name};
use sqlx::{Connection, PgConnection};

use crate::report::ms;
use crate::server::{self, Server, TENANT};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    customers: u64,
    #[arg(long, default_value_t = 10_000_000)]
    orders: u64,
    /// New orders placed between the first and the second recompute.
    #[arg(long, default_value_t = 20_000)]
    new_orders: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let db = server::database(&["segmentation"]).await?;
    let prefix = unique_name("bench");
    let mut conn = PgConnection::connect(db.url()).await?;
    sqlx::query("SET search_path TO segmentation")
        .execute(&mut conn)
        .await?;

    let retailer = Retailer::new(args.seed, args.customers, args.orders);
    let started = Instant::now();
    load(&mut conn, &retailer).await?;
    println!(
        "loaded {} customers and {} orders into segmentation's tables in {:.1} s",
        args.customers,
        args.orders,
        started.elapsed().as_secs_f64()
    );

    // Every customer is due: the server's due sweep computes all features through the live path's writer.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO features (tenant_id, customer_id, frequency, monetary, purchase_days, due_date)
         SELECT tenant_id, customer_id, 0, 0, 0, current_date FROM customers WHERE tenant_id = '{TENANT}';
         INSERT INTO rfm_boundaries VALUES ('{TENANT}', 0, '{{0,0,0,0}}', '{{0,0,0,0}}', '{{0,0,0,0}}', now());
         ANALYZE"
    )))
    .execute(&mut conn)
    .await?;
    let env = [
        ("BOOMERANG_REDIS__KEY_PREFIX", prefix.clone()),
        (
            "BOOMERANG_SEGMENTATION__INGESTION_URL",
            "http://127.0.0.1:1".into(),
        ),
        ("BOOMERANG_SEGMENTATION__TICK_MS", "500".into()),
        // The consumer has no ingestion to read from here; its retries are not news.
        ("BOOMERANG_TELEMETRY__LOG_LEVEL", "error".into()),
        ("BOOMERANG_SERVER__REQUEST_TIMEOUT_MS", "600000".into()),
    ];
    let server = Server::start(db.url(), "segmentation", 8, &env).await?;
    let started = Instant::now();
    wait_swept(&mut conn).await?;
    let features: i64 = sqlx::query_scalar("SELECT count(*) FROM features")
        .fetch_one(&mut conn)
        .await?;
    let sweep = started.elapsed();
    println!(
        "features of {features} customers computed by the due sweep in {:.1} s ({:.0} customers/s)",
        sweep.as_secs_f64(),
        features as f64 / sweep.as_secs_f64()
    );

    let token = server::token(&["segmentation.read", "segmentation.write"])?;
    let first = recompute(
        &server,
        &token,
        "first recompute (every customer enters an RFM group)",
    )
    .await?;
    // Redis loses the tenant's marker: the service finds the gap at its next tick and rebuilds the cache.
    let redis = redis::Client::open(boomerang_testkit::redis_url())?;
    let mut redis_conn = redis.get_multiplexed_async_connection().await?;
    let ready_key = format!("{prefix}:{{{TENANT}}}:ready");
    redis::cmd("DEL")
        .arg(&ready_key)
        .exec_async(&mut redis_conn)
        .await?;
    let started = Instant::now();
    crate::cache::wait_complete(&mut redis_conn, &ready_key).await?;
    let rebuild = started.elapsed();
    println!(
        "cache rebuilt after losing its marker in {:.0} ms (includes up to one 500 ms tick)",
        ms(rebuild)
    );

    // The next scheduled recompute (hourly by default), with nothing changed. The first one rewrote every customer
    // and so kept no copy of them: this one reads every customer, and keeps them.
    let cold = recompute(
        &server,
        &token,
        "scheduled recompute, nothing changed, no copy in memory (reads every customer)",
    )
    .await?;

    // A day of trading: new orders for some customers, through the sweep (as the live path would), then the
    // scheduled recompute moves boundaries and writes only what changed, into Postgres and the complete cache.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO orders (tenant_id, order_id, customer_id, place_time, eligible, amount_minor, channel)
         SELECT '{TENANT}', 'N' || g, 1 + (hashint8(g) & 2147483647) % {customers}, now() - interval '1 hour',
                true, 5000, 2
         FROM generate_series(1, {new}) g;
         UPDATE features SET due_date = current_date
         WHERE tenant_id = '{TENANT}' AND customer_id IN (SELECT customer_id FROM orders WHERE order_id LIKE 'N%')",
        customers = args.customers,
        new = args.new_orders
    )))
    .execute(&mut conn)
    .await?;
    wait_swept(&mut conn).await?;
    let second = recompute(
        &server,
        &token,
        "recompute after a day's orders (writes the diff)",
    )
    .await?;
    let third = recompute(&server, &token, "recompute with nothing changed").await?;
    let rules = crate::rules::measure(server.channel.clone(), &mut conn, TENANT, &token).await?;
    // What a user would write instead: one query with ntile over the same orders.
    let started = Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE rfm_sql AS
         WITH c AS (
             SELECT customer_id, current_date - max(place_time::date) AS recency, count(*) AS frequency,
                    sum(amount_minor) AS monetary
             FROM orders
             WHERE tenant_id = '{TENANT}' AND eligible AND place_time > now() - interval '10 years'
             GROUP BY customer_id)
         SELECT customer_id, recency, frequency, monetary,
                ntile(5) OVER (ORDER BY recency DESC) AS r,
                ntile(5) OVER (ORDER BY frequency) AS f,
                ntile(5) OVER (ORDER BY monetary) AS m
         FROM c"
    )))
    .execute(&mut conn)
    .await?;
    let baseline = started.elapsed();
    let baseline_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rfm_sql")
        .fetch_one(&mut conn)
        .await?;
    println!(
        "SQL ntile baseline: {:.0} ms for {baseline_rows} customers",
        ms(baseline)
    );

    println!();
    println!("| measure | figure |");
    println!("|---|---|");
    println!(
        "| customers / orders | {} / {} |",
        args.customers, args.orders
    );
    println!(
        "| first recompute (all memberships written) | {:.0} ms, peak RSS {:.0} MiB |",
        ms(first.0),
        first.2
    );
    println!(
        "| recompute after {} new orders ({} changes) | {:.0} ms, peak RSS {:.0} MiB |",
        args.new_orders,
        second.1.memberships_entered + second.1.memberships_exited,
        ms(second.0),
        second.2
    );
    println!("| recompute with nothing changed | {:.0} ms |", ms(third.0));
    println!(
        "| the same with no copy in memory (every customer read) | {:.0} ms (load {} ms) |",
        ms(cold.0),
        cold.1.load_ms
    );
    println!(
        "| cache rebuild after a loss ({} customers, detection tick included) | {:.0} ms |",
        features,
        ms(rebuild)
    );
    println!("| SQL ntile baseline | {:.0} ms |", ms(baseline));
    println!(
        "| five-condition rule over {} customers: evaluation (PreviewSegment) | {} ms ({:.0} ms end to end; {} match) |",
        rules.customers,
        rules.evaluate_ms,
        ms(rules.preview),
        rules.matching
    );
    println!(
        "| the same rule as CreateSegment (evaluation, members written to Postgres and Redis) | {:.0} ms |",
        ms(rules.create)
    );
    println!(
        "| the same conditions as one SQL count over the features table | {:.0} ms |",
        ms(rules.sql)
    );
    for fit in &rules.fits {
        println!(
            "| {} fit over {} customers | {} ms, {} iterations |",
            fit.model, fit.customers, fit.fit_ms, fit.iterations
        );
    }
    println!(
        "| FitPredictionModels end to end (read every customer, both fits, store) | {:.0} ms |",
        ms(rules.fit)
    );
    println!(
        "| speed-up over the baseline (steady-state recompute) | {:.1}x |",
        baseline.as_secs_f64() / second.0.as_secs_f64()
    );
    server.stop()?;
    let mut redis_conn = redis.get_multiplexed_async_connection().await?;
    crate::cache::delete_prefix(&mut redis_conn, &prefix).await?;
    Ok(())
}

async fn wait_swept(conn: &mut PgConnection) -> anyhow::Result<()> {
    loop {
        let due: i64 =
            sqlx::query_scalar("SELECT count(*) FROM features WHERE due_date <= current_date")
                .fetch_one(&mut *conn)
                .await?;
        if due == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// COPYs the retailer's customers and orders into segmentation's projection, as the consumer would have stored
/// them.
async fn load(conn: &mut PgConnection, retailer: &Retailer) -> anyhow::Result<()> {
    let mut copy = conn
        .copy_in_raw("COPY customers (tenant_id, customer_id, external_id) FROM STDIN")
        .await?;
    let mut buffer = String::with_capacity(1 << 21);
    for customer in retailer.customers() {
        buffer.push_str(&format!(
            "{TENANT}\t{}\t{}\n",
            customer.n + 1,
            customer.external_id
        ));
        if buffer.len() > 1 << 20 {
            copy.send(buffer.as_bytes()).await?;
            buffer.clear();
        }
    }
    copy.send(buffer.as_bytes()).await?;
    copy.finish().await?;
    buffer.clear();
    let mut copy = conn
        .copy_in_raw(
            "COPY orders (tenant_id, order_id, customer_id, place_time, eligible, amount_minor, channel) FROM STDIN",
        )
        .await?;
    for order in retailer.orders() {
        let customer: u64 = order.customer_id[1..].parse()?;
        let eligible = matches!(order.status, Status::Paid | Status::PartiallyPaid);
        let channel = match order.channel {
            Channel::Store => 1,
            Channel::Web => 2,
            Channel::App => 3,
        };
        buffer.push_str(&format!(
            "{TENANT}\t{}\t{}\t{}\t{}\t{}\t{channel}\n",
            order.order_id,
            customer + 1,
            order.placed_at.to_rfc3339(),
            if eligible { "t" } else { "f" },
            order.amount_minor
        ));
        if buffer.len() > 1 << 20 {
            copy.send(buffer.as_bytes()).await?;
            buffer.clear();
        }
    }
    copy.send(buffer.as_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// One `Recompute` call, printed with where its time went and the server's peak memory during it.
async fn recompute(
    server: &Server,
    token: &str,
    label: &str,
) -> anyhow::Result<(Duration, pb::RecomputeResponse, f64)> {
    server.reset_peak_rss()?;
    let started = Instant::now();
    let response = SegmentationServiceClient::new(server.channel.clone())
        .recompute(authed(
            token,
            pb::RecomputeRequest {
                parent: format!("tenants/{TENANT}"),
            },
        ))
        .await?
        .into_inner();
    let elapsed = started.elapsed();
    let rss = server.peak_rss_mib();
    println!(
        "{label}: {:.0} ms (load {} ms of {} customers, evaluate {} ms, write {} ms, cache {} ms), {} scored, \
         {} evaluated, {} entered, {} exited, server peak RSS {rss:.0} MiB",
        ms(elapsed),
        response.load_ms,
        response.customers_read,
        response.evaluate_ms,
        response.write_ms,
        response.cache_ms,
        response.scored_customers,
        response.customers_evaluated,
        response.memberships_entered,
        response.memberships_exited
    );
    Ok((elapsed, response, rss))
}
