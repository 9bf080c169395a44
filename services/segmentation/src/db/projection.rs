//! What segmentation keeps of ingestion's data: customers' external ids and birth dates, orders and market
//! transactions of known customers, and their marketing consents. Every write is keyed by ingestion's own ids, so a
//! redelivered event changes nothing.

use boomerang_proto::ingestion as pb;
use boomerang_service_kit::time::from_timestamp;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

/// An event's time; ingestion always sets it, so a missing one (never expected) is stored as the epoch rather than
/// failing the whole stream.
fn time(t: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    t.and_then(from_timestamp)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Stores customers' external ids and birth dates; returns the customers (whose features may have changed).
pub async fn upsert_customers(
    conn: &mut PgConnection,
    tenant: &str,
    customers: &[pb::CustomerChange],
) -> Result<Vec<i64>, sqlx::Error> {
    let ids: Vec<i64> = customers.iter().map(|c| c.customer_id).collect();
    let external: Vec<Option<&str>> = customers
        .iter()
        .map(|c| Some(c.external_id.as_str()).filter(|e| !e.is_empty()))
        .collect();
    // Ingestion validated the date; an unreadable one is treated as not given rather than failing the stream.
    let birth: Vec<Option<NaiveDate>> = customers
        .iter()
        .map(|c| c.birth_date.parse().ok())
        .collect();
    sqlx::query(
        "INSERT INTO customers (tenant_id, customer_id, external_id, birth_date)
         SELECT DISTINCT ON (i.id) $1, i.id, i.external_id, i.birth_date
         FROM unnest($2::int8[], $3::text[], $4::date[]) WITH ORDINALITY AS i(id, external_id, birth_date, n)
         ORDER BY i.id, i.n DESC
         ON CONFLICT (tenant_id, customer_id)
         DO UPDATE SET external_id = coalesce(EXCLUDED.external_id, customers.external_id),
                       birth_date = coalesce(EXCLUDED.birth_date, customers.birth_date)",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(&external)
    .bind(&birth)
    .execute(&mut *conn)
    .await?;
    Ok(ids)
}

/// Stores marketing consents (the only purpose segments look at); a decision older than the stored one is ignored.
/// Returns the customers whose consents were reported.
pub async fn upsert_consents(
    conn: &mut PgConnection,
    tenant: &str,
    changes: &[pb::ConsentUpdate],
) -> Result<Vec<i64>, sqlx::Error> {
    let marketing: Vec<(i64, &pb::Consent)> = changes
        .iter()
        .filter_map(|c| Some((c.customer_id, c.consent.as_ref()?)))
        .filter(|(_, c)| c.purpose() == pb::ConsentPurpose::Marketing)
        .collect();
    let customers: Vec<i64> = marketing.iter().map(|(id, _)| *id).collect();
    let channels: Vec<i16> = marketing.iter().map(|(_, c)| c.channel as i16).collect();
    let granted: Vec<bool> = marketing.iter().map(|(_, c)| c.granted).collect();
    let times: Vec<DateTime<Utc>> = marketing
        .iter()
        .map(|(_, c)| time(c.change_time.as_ref()))
        .collect();
    sqlx::query(
        "INSERT INTO consents AS k (tenant_id, customer_id, channel, granted, change_time)
         SELECT DISTINCT ON (i.customer_id, i.channel) $1, i.customer_id, i.channel, i.granted, i.change_time
         FROM unnest($2::int8[], $3::int2[], $4::bool[], $5::timestamptz[])
              AS i(customer_id, channel, granted, change_time)
         ORDER BY i.customer_id, i.channel, i.change_time DESC
         ON CONFLICT (tenant_id, customer_id, channel) DO UPDATE
             SET granted = EXCLUDED.granted, change_time = EXCLUDED.change_time
             WHERE EXCLUDED.change_time >= k.change_time",
    )
    .bind(tenant)
    .bind(&customers)
    .bind(&channels)
    .bind(&granted)
    .bind(&times)
    .execute(&mut *conn)
    .await?;
    Ok(customers)
}

/// The category of an order's largest line (by quantity × unit price; the first of equals), if it has lines.
fn order_category(order: &pb::OrderChange) -> Option<&str> {
    let value = |l: &pb::OrderLine| {
        i64::from(l.quantity).saturating_mul(l.unit_price.as_ref().map_or(0, |p| p.minor_units))
    };
    order
        .lines
        .iter()
        .filter(|l| !l.category.is_empty())
        .fold(None, |best: Option<&pb::OrderLine>, line| match best {
            Some(b) if value(b) >= value(line) => Some(b),
            _ => Some(line),
        })
        .map(|l| l.category.as_str())
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
    let orders: Vec<&pb::OrderChange> = latest.into_values().collect();
    let ids: Vec<&str> = orders.iter().map(|o| o.order_id.as_str()).collect();
    let customers: Vec<i64> = orders.iter().map(|o| o.customer_id).collect();
    let times: Vec<DateTime<Utc>> = orders.iter().map(|o| time(o.place_time.as_ref())).collect();
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
    let categories: Vec<Option<&str>> = orders.iter().map(|o| order_category(o)).collect();
    sqlx::query_scalar(
        "WITH input AS (
             SELECT * FROM unnest($2::text[], $3::int8[], $4::timestamptz[], $5::bool[], $6::int8[], $7::int2[],
                                  $8::text[])
                 AS i(order_id, customer_id, place_time, eligible, amount_minor, channel, category)),
         previous AS (
             SELECT o.customer_id FROM orders o JOIN input i USING (order_id)
             WHERE o.tenant_id = $1 AND o.customer_id <> i.customer_id),
         gone AS (
             DELETE FROM orders o USING input i
             WHERE o.tenant_id = $1 AND o.order_id = i.order_id AND i.customer_id = 0),
         stored AS (
             INSERT INTO orders (tenant_id, order_id, customer_id, place_time, eligible, amount_minor, channel,
                                 category)
             SELECT $1, * FROM input WHERE customer_id <> 0
             ON CONFLICT (tenant_id, order_id) DO UPDATE SET
                 customer_id = EXCLUDED.customer_id, place_time = EXCLUDED.place_time,
                 eligible = EXCLUDED.eligible, amount_minor = EXCLUDED.amount_minor, channel = EXCLUDED.channel,
                 category = EXCLUDED.category
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
    .bind(&categories)
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
    let ids: Vec<&str> = known.iter().map(|t| t.transaction_id.as_str()).collect();
    let customers: Vec<i64> = known.iter().map(|t| t.customer_id).collect();
    let merchants: Vec<&str> = known.iter().map(|t| t.merchant_id.as_str()).collect();
    let categories: Vec<&str> = known.iter().map(|t| t.merchant_category.as_str()).collect();
    let amounts: Vec<i64> = known
        .iter()
        .map(|t| t.amount.as_ref().map_or(0, |a| a.minor_units))
        .collect();
    let times: Vec<DateTime<Utc>> = known.iter().map(|t| time(t.occur_time.as_ref())).collect();
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

/// Adds engagement events to their customers' running totals; returns the customers.
pub async fn record_engagement(
    conn: &mut PgConnection,
    tenant: &str,
    events: &[pb::EngagementChange],
) -> Result<Vec<i64>, sqlx::Error> {
    let known: Vec<&pb::EngagementChange> = events.iter().filter(|e| e.customer_id != 0).collect();
    let customers: Vec<i64> = known.iter().map(|e| e.customer_id).collect();
    let times: Vec<DateTime<Utc>> = known.iter().map(|e| time(e.occur_time.as_ref())).collect();
    sqlx::query_scalar(
        "INSERT INTO engagement AS g (tenant_id, customer_id, last_time, events)
         SELECT $1, customer_id, max(t), count(*) FROM unnest($2::int8[], $3::timestamptz[]) AS e(customer_id, t)
         GROUP BY customer_id
         ON CONFLICT (tenant_id, customer_id) DO UPDATE
             SET last_time = greatest(g.last_time, EXCLUDED.last_time), events = g.events + EXCLUDED.events
         RETURNING customer_id",
    )
    .bind(tenant)
    .bind(&customers)
    .bind(&times)
    .fetch_all(&mut *conn)
    .await
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
    sqlx::query(
        "WITH moved AS (
             DELETE FROM engagement g USING unnest($2::int8[], $3::int8[]) AS m(survivor, merged)
             WHERE g.tenant_id = $1 AND g.customer_id = m.merged
             RETURNING m.survivor, g.last_time, g.events)
         INSERT INTO engagement AS g (tenant_id, customer_id, last_time, events)
         SELECT $1, survivor, max(last_time), sum(events) FROM moved GROUP BY survivor
         ON CONFLICT (tenant_id, customer_id) DO UPDATE
             SET last_time = greatest(g.last_time, EXCLUDED.last_time), events = g.events + EXCLUDED.events",
    )
    .bind(tenant)
    .bind(&survivors)
    .bind(&merged)
    .execute(&mut *conn)
    .await?;
    // The survivor keeps its own consent per channel unless the merged customer decided later.
    sqlx::query(
        "WITH moved AS (
             DELETE FROM consents k USING unnest($2::int8[], $3::int8[]) AS m(survivor, merged)
             WHERE k.tenant_id = $1 AND k.customer_id = m.merged
             RETURNING m.survivor, k.channel, k.granted, k.change_time)
         INSERT INTO consents AS k (tenant_id, customer_id, channel, granted, change_time)
         SELECT DISTINCT ON (survivor, channel) $1, survivor, channel, granted, change_time FROM moved
         ORDER BY survivor, channel, change_time DESC
         ON CONFLICT (tenant_id, customer_id, channel) DO UPDATE
             SET granted = EXCLUDED.granted, change_time = EXCLUDED.change_time
             WHERE EXCLUDED.change_time > k.change_time",
    )
    .bind(tenant)
    .bind(&survivors)
    .bind(&merged)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE customers c SET birth_date = coalesce(c.birth_date, gone.birth_date)
         FROM unnest($2::int8[], $3::int8[]) AS m(survivor, merged)
         JOIN customers gone ON gone.tenant_id = $1 AND gone.customer_id = m.merged
         WHERE c.tenant_id = $1 AND c.customer_id = m.survivor",
    )
    .bind(tenant)
    .bind(&survivors)
    .bind(&merged)
    .execute(&mut *conn)
    .await?;
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
    for table in [
        "orders",
        "transactions",
        "engagement",
        "consents",
        "customers",
    ] {
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
