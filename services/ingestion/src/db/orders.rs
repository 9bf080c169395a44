//! Orders: idempotent batch upserts and status changes.

use boomerang_auth::TenantId;
use boomerang_events::{NewEvent, Outbox};
use boomerang_proto::ingestion as pb;
use boomerang_service_kit::time::to_timestamp;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};

use super::cache::IdentityCache;
use super::customer_name;
use super::refs::Attaching;
use crate::domain::batch::{Fate, Mode, refusals};
use crate::domain::order::{Order, OrderLine};
use crate::error::IngestionError;

/// Stores validated orders (with their request indexes) in one transaction: creates new ones, updates changed ones,
/// and reports unchanged ones as duplicates.
pub async fn ingest(
    pool: &PgPool,
    outbox: &Outbox,
    cache: &IdentityCache,
    tenant: &TenantId,
    mut orders: Vec<(usize, Order)>,
    mode: Mode,
) -> Result<Vec<(usize, Fate)>, IngestionError> {
    // Sorted by order id so concurrent batches touch rows in the same order and cannot deadlock.
    orders.sort_by(|a, b| a.1.order_id.cmp(&b.1.order_id));
    let mut batch = Attaching::begin(
        pool,
        tenant,
        cache,
        orders.iter().filter_map(|(_, o)| o.customer.as_ref()),
    )
    .await?;

    let mut fates = Vec::with_capacity(orders.len());
    let mut rows = OrderColumns::default();
    let mut kept = Vec::with_capacity(orders.len());
    for (index, order) in orders {
        match batch.resolved.customer_of(order.customer.as_ref()) {
            Err(reason) => fates.push((
                index,
                Fate::Refused {
                    field: "customer".into(),
                    reason,
                },
            )),
            Ok(customer_id) => {
                rows.push(&order, customer_id);
                kept.push((index, order, customer_id));
            }
        }
    }
    if mode == Mode::Atomic && !fates.is_empty() {
        return Err(IngestionError::Refused(refusals(&fates, "orders")));
    }

    let changed = upsert_rows(&mut batch.tx, tenant, &rows).await?;
    let mut events = Vec::with_capacity(changed.len());
    let mut with_lines = Vec::new();
    let mut lines = Vec::new();
    for (index, order, customer_id) in kept {
        let resource = customer_id
            .map(|id| customer_name(tenant, id))
            .unwrap_or_default();
        match changed.get(&order.order_id) {
            Some(previous) => {
                if !order.lines.is_empty() || previous.is_some() {
                    with_lines.push(order.order_id.clone());
                }
                events.push(order_change(&order, customer_id.unwrap_or(0), *previous));
                fates.push((index, Fate::Accepted { resource }));
                if !order.lines.is_empty() {
                    lines.push((order.order_id.clone(), order.lines.clone()));
                }
            }
            None => fates.push((index, Fate::Duplicate { resource })),
        }
    }
    replace_lines(&mut batch.tx, tenant, &with_lines, &lines).await?;
    let event = (!events.is_empty()).then(|| {
        NewEvent::new(
            tenant,
            "order.upserted",
            &pb::OrdersUpserted { orders: events },
        )
    });
    batch.commit(outbox, cache, tenant, event).await?;
    Ok(fates)
}

#[derive(Default)]
struct OrderColumns {
    order_ids: Vec<String>,
    customers: Vec<Option<i64>>,
    channels: Vec<i16>,
    stores: Vec<String>,
    place_times: Vec<DateTime<Utc>>,
    statuses: Vec<i16>,
    amounts: Vec<i64>,
    currencies: Vec<&'static str>,
    lines_hashes: Vec<i64>,
}

impl OrderColumns {
    /// The rows whose order id is not in `written`.
    fn without(&self, written: &HashMap<String, Option<i16>>) -> OrderColumns {
        let mut rest = OrderColumns::default();
        for i in 0..self.order_ids.len() {
            if !written.contains_key(&self.order_ids[i]) {
                rest.order_ids.push(self.order_ids[i].clone());
                rest.customers.push(self.customers[i]);
                rest.channels.push(self.channels[i]);
                rest.stores.push(self.stores[i].clone());
                rest.place_times.push(self.place_times[i]);
                rest.statuses.push(self.statuses[i]);
                rest.amounts.push(self.amounts[i]);
                rest.currencies.push(self.currencies[i]);
                rest.lines_hashes.push(self.lines_hashes[i]);
            }
        }
        rest
    }

    fn push(&mut self, order: &Order, customer: Option<i64>) {
        self.order_ids.push(order.order_id.clone());
        self.customers.push(customer);
        self.channels.push(order.channel as i16);
        self.stores.push(order.store.clone());
        self.place_times.push(order.place_time);
        self.statuses.push(order.status as i16);
        self.amounts.push(order.amount.minor_units);
        self.currencies.push(order.amount.code());
        self.lines_hashes.push(order.lines_hash());
    }
}

/// Inserts new orders and updates changed ones; returns each written order id with its previous status (`None`
/// when new). Orders sent again unchanged are not written and not returned.
///
/// The bulk path (new orders) is one plain insert. Only orders that already existed go through the update, which
/// joins the table a second time to return each order's status as it was before the statement.
async fn upsert_rows(
    conn: &mut PgConnection,
    tenant: &TenantId,
    rows: &OrderColumns,
) -> Result<HashMap<String, Option<i16>>, sqlx::Error> {
    if rows.order_ids.is_empty() {
        return Ok(HashMap::new());
    }
    // unnest in the select list streams rows (a ProjectSet) where unnest in FROM would first materialise them all.
    let inserted = sqlx::query(
        "INSERT INTO orders (tenant_id, order_id, customer_id, channel, store, place_time, status,
                             amount_minor, currency, lines_hash)
         SELECT $1, unnest($2::text[]), unnest($3::bigint[]), unnest($4::smallint[]), unnest($5::text[]),
                unnest($6::timestamptz[]), unnest($7::smallint[]), unnest($8::bigint[]), unnest($9::text[]),
                unnest($10::bigint[])
         ON CONFLICT (tenant_id, order_id) DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(&rows.order_ids)
    .bind(&rows.customers)
    .bind(&rows.channels)
    .bind(&rows.stores)
    .bind(&rows.place_times)
    .bind(&rows.statuses)
    .bind(&rows.amounts)
    .bind(&rows.currencies)
    .bind(&rows.lines_hashes)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted as usize == rows.order_ids.len() {
        return Ok(rows.order_ids.iter().map(|id| (id.clone(), None)).collect());
    }
    // Some orders existed: the ones this transaction inserted are those whose row version it created.
    let new: Vec<String> = sqlx::query_scalar(
        "SELECT order_id FROM orders
         WHERE tenant_id = $1 AND order_id = ANY($2) AND xmin = pg_current_xact_id()::xid",
    )
    .bind(tenant.as_str())
    .bind(&rows.order_ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut written: HashMap<String, Option<i16>> = new.into_iter().map(|id| (id, None)).collect();

    let existing = rows.without(&written);
    let updated: Vec<(String, i16)> = sqlx::query_as(
        "UPDATE orders o SET
             customer_id = i.customer_id, channel = i.channel, store = i.store, place_time = i.place_time,
             status = i.status, amount_minor = i.amount_minor, currency = i.currency, lines_hash = i.lines_hash,
             update_time = now()
         FROM unnest($2::text[], $3::bigint[], $4::smallint[], $5::text[], $6::timestamptz[],
                     $7::smallint[], $8::bigint[], $9::text[], $10::bigint[])
                 AS i(order_id, customer_id, channel, store, place_time, status, amount_minor, currency, lines_hash),
              orders previous
         WHERE o.tenant_id = $1 AND o.order_id = i.order_id
           AND previous.tenant_id = $1 AND previous.order_id = i.order_id
           AND (o.customer_id, o.channel, o.store, o.place_time, o.status, o.amount_minor, o.currency, o.lines_hash)
               IS DISTINCT FROM
               (i.customer_id, i.channel, i.store, i.place_time, i.status, i.amount_minor, i.currency, i.lines_hash)
         RETURNING o.order_id, previous.status",
    )
    .bind(tenant.as_str())
    .bind(&existing.order_ids)
    .bind(&existing.customers)
    .bind(&existing.channels)
    .bind(&existing.stores)
    .bind(&existing.place_times)
    .bind(&existing.statuses)
    .bind(&existing.amounts)
    .bind(&existing.currencies)
    .bind(&existing.lines_hashes)
    .fetch_all(conn)
    .await?;
    written.extend(
        updated
            .into_iter()
            .map(|(id, previous)| (id, Some(previous))),
    );
    Ok(written)
}

/// Replaces the lines of the written orders that have (or had) lines.
async fn replace_lines(
    conn: &mut PgConnection,
    tenant: &TenantId,
    order_ids: &[String],
    lines: &[(String, Vec<OrderLine>)],
) -> Result<(), sqlx::Error> {
    if order_ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM order_lines WHERE tenant_id = $1 AND order_id = ANY($2)")
        .bind(tenant.as_str())
        .bind(order_ids)
        .execute(&mut *conn)
        .await?;
    let (mut ids, mut numbers, mut skus, mut categories, mut quantities, mut prices) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (order_id, order_lines) in lines {
        for (n, line) in order_lines.iter().enumerate() {
            ids.push(order_id.as_str());
            numbers.push(n as i32);
            skus.push(line.sku.as_str());
            categories.push(line.category.as_str());
            quantities.push(line.quantity);
            prices.push(line.unit_price_minor);
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO order_lines (tenant_id, order_id, line_no, sku, category, quantity, unit_price_minor)
         SELECT $1, * FROM unnest($2::text[], $3::int[], $4::text[], $5::text[], $6::int[], $7::bigint[])",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .bind(&numbers)
    .bind(&skus)
    .bind(&categories)
    .bind(&quantities)
    .bind(&prices)
    .execute(conn)
    .await?;
    Ok(())
}

fn order_change(order: &Order, customer_id: i64, previous: Option<i16>) -> pb::OrderChange {
    pb::OrderChange {
        order_id: order.order_id.clone(),
        customer_id,
        channel: order.channel as i32,
        store: order.store.clone(),
        place_time: Some(to_timestamp(order.place_time)),
        status: order.status as i32,
        previous_status: previous.map_or(0, i32::from),
        amount: Some(order.amount.to_proto()),
        lines: order
            .lines
            .iter()
            .map(|line| pb::OrderLine {
                sku: line.sku.clone(),
                category: line.category.clone(),
                quantity: line.quantity,
                unit_price: Some(pb::Money {
                    currency_code: order.amount.code().to_owned(),
                    minor_units: line.unit_price_minor,
                }),
            })
            .collect(),
    }
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    order_id: String,
    customer_id: Option<i64>,
    channel: i16,
    store: String,
    place_time: DateTime<Utc>,
    status: i16,
    previous_status: i16,
    amount_minor: i64,
    currency: String,
}

/// Sets one order's status; `None` when the order does not exist. Publishes a change only when the status changed.
pub async fn update_status(
    pool: &PgPool,
    outbox: &Outbox,
    tenant: &TenantId,
    order_id: &str,
    status: pb::OrderStatus,
) -> Result<Option<pb::Order>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The order's customer is reported as it is now: the survivor, if the customer was merged since.
    let row: Option<OrderRow> = sqlx::query_as(
        "WITH previous AS (
             SELECT status FROM orders WHERE tenant_id = $1 AND order_id = $2 FOR UPDATE
         ), updated AS (
             UPDATE orders o SET status = $3,
                 update_time = CASE WHEN o.status = $3 THEN o.update_time ELSE now() END
             FROM previous
             WHERE o.tenant_id = $1 AND o.order_id = $2
             RETURNING o.order_id, o.customer_id, o.channel, o.store, o.place_time, o.status,
                       previous.status AS previous_status, o.amount_minor, o.currency
         )
         SELECT u.order_id, coalesce(c.merged_into, u.customer_id) AS customer_id, u.channel, u.store,
                u.place_time, u.status, u.previous_status, u.amount_minor, u.currency
         FROM updated u LEFT JOIN customers c ON c.tenant_id = $1 AND c.id = u.customer_id",
    )
    .bind(tenant.as_str())
    .bind(order_id)
    .bind(status as i16)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let amount = pb::Money {
        currency_code: row.currency.clone(),
        minor_units: row.amount_minor,
    };
    if row.previous_status != row.status {
        let change = pb::OrderChange {
            order_id: row.order_id.clone(),
            customer_id: row.customer_id.unwrap_or(0),
            channel: i32::from(row.channel),
            store: row.store.clone(),
            place_time: Some(to_timestamp(row.place_time)),
            status: i32::from(row.status),
            previous_status: i32::from(row.previous_status),
            amount: Some(amount.clone()),
            lines: Vec::new(),
        };
        outbox
            .publish(
                &mut tx,
                vec![NewEvent::new(
                    tenant,
                    "order.upserted",
                    &pb::OrdersUpserted {
                        orders: vec![change],
                    },
                )],
            )
            .await?;
    }
    tx.commit().await?;
    Ok(Some(pb::Order {
        order_id: row.order_id,
        customer: None,
        channel: i32::from(row.channel),
        store: row.store,
        place_time: Some(to_timestamp(row.place_time)),
        status: i32::from(row.status),
        amount: Some(amount),
        lines: Vec::new(),
        customer_name: row
            .customer_id
            .map(|id| customer_name(tenant, id))
            .unwrap_or_default(),
    }))
}
