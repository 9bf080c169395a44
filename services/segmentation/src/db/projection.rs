//! What segmentation keeps of ingestion's data: customers' external ids, orders and market transactions of known
//! customers. Every write is keyed by ingestion's own ids, so a redelivered event changes nothing.

use boomerang_proto::ingestion as pb;
use boomerang_service_kit::time::from_timestamp;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

pub async fn upsert_customers(
    conn: &mut PgConnection,
    tenant: &str,
    customers: &[pb::CustomerChange],
) -> Result<(), sqlx::Error> {
    let ids: Vec<i64> = customers.iter().map(|c| c.customer_id).collect();
    let external: Vec<Option<&str>> = customers
        .iter()
        .map(|c| Some(c.external_id.as_str()).filter(|e| !e.is_empty()))
        .collect();
    sqlx::query(
        "INSERT INTO customers (tenant_id, customer_id, external_id)
         SELECT DISTINCT ON (i.id) $1, i.id, i.external_id FROM unnest($2::int8[], $3::text[]) AS i(id, external_id)
         ON CONFLICT (tenant_id, customer_id)
         DO UPDATE SET external_id = coalesce(EXCLUDED.external_id, customers.external_id)",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(&external)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stores orders as last reported and returns every customer whose orders changed (including the previous owner of
/// an order that moved). Guest orders are not kept.
pub async fn upsert_orders(
    conn: &mut PgConnection,
    tenant: &str,
    orders: &[pb::OrderChange],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut latest: std::collections::HashMap<&str, &pb::OrderChange> = Default::default();
    for order in orders {
        latest.insert(order.order_id.as_str(), order);
    }
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let orders: Vec<&pb::OrderChange> = latest.into_values().collect();
    let ids: Vec<&str> = orders.iter().map(|o| o.order_id.as_str()).collect();
    let customers: Vec<i64> = orders.iter().map(|o| o.customer_id).collect();
    let times: Vec<DateTime<Utc>> = orders
        .iter()
        .map(|o| {
            o.place_time
                .as_ref()
                .and_then(from_timestamp)
                .unwrap_or(epoch)
        })
        .collect();
    let eligible: Vec<bool> = orders
        .iter()
        .map(|o| {
            matches!(
                o.status(),
                pb::OrderStatus::Paid | pb::OrderStatus::PartiallyPaid
            )
        })
        .collect();
    let amounts: Vec<i64> = orders
        .iter()
        .map(|o| o.amount.as_ref().map_or(0, |a| a.minor_units))
        .collect();
    let channels: Vec<i16> = orders.iter().map(|o| o.channel as i16).collect();
    sqlx::query_scalar(
        "WITH input AS (
             SELECT * FROM unnest($2::text[], $3::int8[], $4::timestamptz[], $5::bool[], $6::int8[], $7::int2[])
                 AS i(order_id, customer_id, place_time, eligible, amount_minor, channel)),
         previous AS (
             SELECT o.customer_id FROM orders o JOIN input i USING (order_id)
             WHERE o.tenant_id = $1 AND o.customer_id <> i.customer_id),
         gone AS (
             DELETE FROM orders o USING input i
             WHERE o.tenant_id = $1 AND o.order_id = i.order_id AND i.customer_id = 0),
         stored AS (
             INSERT INTO orders (tenant_id, order_id, customer_id, place_time, eligible, amount_minor, channel)
             SELECT $1, * FROM input WHERE customer_id <> 0
             ON CONFLICT (tenant_id, order_id) DO UPDATE SET
                 customer_id = EXCLUDED.customer_id, place_time = EXCLUDED.place_time,
                 eligible = EXCLUDED.eligible, amount_minor = EXCLUDED.amount_minor, channel = EXCLUDED.channel
             RETURNING customer_id)
         SELECT customer_id FROM previous UNION SELECT customer_id FROM stored",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(&customers)
    .bind(&times)
    .bind(&eligible)
    .bind(&amounts)
    .bind(&channels)
    .fetch_all(&mut *conn)
    .await
}

/// Stores new market transactions of known customers; returns the customers they belong to.
pub async fn insert_transactions(
    conn: &mut PgConnection,
    tenant: &str,
    transactions: &[pb::TransactionChange],
) -> Result<Vec<i64>, sqlx::Error> {
    let known: Vec<&pb::TransactionChange> =
        transactions.iter().filter(|t| t.customer_id != 0).collect();
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let ids: Vec<&str> = known.iter().map(|t| t.transaction_id.as_str()).collect();
    let customers: Vec<i64> = known.iter().map(|t| t.customer_id).collect();
    let merchants: Vec<&str> = known.iter().map(|t| t.merchant_id.as_str()).collect();
    let categories: Vec<&str> = known.iter().map(|t| t.merchant_category.as_str()).collect();
    let amounts: Vec<i64> = known
        .iter()
        .map(|t| t.amount.as_ref().map_or(0, |a| a.minor_units))
        .collect();
    let times: Vec<DateTime<Utc>> = known
        .iter()
        .map(|t| {
            t.occur_time
                .as_ref()
                .and_then(from_timestamp)
                .unwrap_or(epoch)
        })
        .collect();
    sqlx::query(
        "INSERT INTO transactions (tenant_id, transaction_id, customer_id, merchant_id, category, amount_minor,
                                   occur_time)
         SELECT $1, * FROM unnest($2::text[], $3::int8[], $4::text[], $5::text[], $6::int8[], $7::timestamptz[])
         ON CONFLICT (tenant_id, transaction_id) DO NOTHING",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(&customers)
    .bind(&merchants)
    .bind(&categories)
    .bind(&amounts)
    .bind(&times)
    .execute(&mut *conn)
    .await?;
    Ok(customers)
}

/// Moves everything of merged customers to their survivors.
pub async fn merge(
    conn: &mut PgConnection,
    tenant: &str,
    merges: &[pb::CustomerMerge],
) -> Result<(), sqlx::Error> {
    let survivors: Vec<i64> = merges.iter().map(|m| m.survivor_customer_id).collect();
    let merged: Vec<i64> = merges.iter().map(|m| m.merged_customer_id).collect();
    for table in ["orders", "transactions"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} t SET customer_id = m.survivor
             FROM unnest($2::int8[], $3::int8[]) AS m(survivor, merged)
             WHERE t.tenant_id = $1 AND t.customer_id = m.merged"
        )))
        .bind(tenant)
        .bind(&survivors)
        .bind(&merged)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM customers WHERE tenant_id = $1 AND customer_id = ANY($2)")
        .bind(tenant)
        .bind(&merged)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Deletes everything held about erased customers except their membership history, which the writer removes.
pub async fn erase(
    conn: &mut PgConnection,
    tenant: &str,
    customers: &[i64],
) -> Result<(), sqlx::Error> {
    for table in ["orders", "transactions", "customers"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE tenant_id = $1 AND customer_id = ANY($2)"
        )))
        .bind(tenant)
        .bind(customers)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
