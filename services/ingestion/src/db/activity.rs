//! Market transactions and engagement events: immutable facts, idempotent on the source's id.

use std::collections::HashSet;

use boomerang_auth::TenantId;
use boomerang_events::{NewEvent, Outbox};
use boomerang_proto::ingestion as pb;
use boomerang_service_kit::time::to_timestamp;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::cache::IdentityCache;
use super::customer_name;
use super::refs::{Attaching, Resolved};
use crate::domain::activity::{EngagementEvent, MarketTransaction};
use crate::domain::batch::{Fate, Mode, refusals};
use crate::domain::identifier::Identifier;
use crate::error::IngestionError;

/// An immutable fact tied to a customer, for the shared write path below.
trait Fact {
    fn id(&self) -> &str;
    fn customer(&self) -> &Identifier;
}

impl Fact for MarketTransaction {
    fn id(&self) -> &str {
        &self.transaction_id
    }
    fn customer(&self) -> &Identifier {
        &self.customer
    }
}

impl Fact for EngagementEvent {
    fn id(&self) -> &str {
        &self.event_id
    }
    fn customer(&self) -> &Identifier {
        &self.customer
    }
}

/// Facts to insert, each with its request index and customer.
type Kept<T> = Vec<(usize, T, i64)>;

/// Resolves the customers of `facts`, refusing facts about erased people. Returns the facts to insert and the fates
/// decided so far.
fn split<T: Fact>(facts: Vec<(usize, T)>, resolved: &Resolved) -> (Kept<T>, Vec<(usize, Fate)>) {
    let mut keep = Vec::with_capacity(facts.len());
    let mut fates = Vec::new();
    for (index, fact) in facts {
        match resolved.customer_of(Some(fact.customer())) {
            Err(reason) => fates.push((
                index,
                Fate::Refused {
                    field: "customer".into(),
                    reason,
                },
            )),
            Ok(Some(customer)) => keep.push((index, fact, customer)),
            Ok(None) => unreachable!(
                "resolve creates a customer for every identifier that is not suppressed"
            ),
        }
    }
    (keep, fates)
}

/// Refuses the facts whose ids `changed` holds: stored before with other content, while facts never change. Only
/// an exact resend is a duplicate.
fn refuse_changed<T: Fact>(
    kept: &mut Kept<T>,
    changed: &HashSet<String>,
    (what, id_field): (&str, &str),
    fates: &mut Vec<(usize, Fate)>,
) {
    kept.retain(|(index, fact, _)| {
        if !changed.contains(fact.id()) {
            return true;
        }
        fates.push((
            *index,
            Fate::Refused {
                field: id_field.into(),
                reason: format!(
                    "{what} {:?} is stored with other content, and {what}s never change; send a new id",
                    fact.id()
                ),
            },
        ));
        false
    });
}

/// Fates of inserted facts: accepted when `inserted` holds the id, else a duplicate of a stored one.
fn fates_of<T: Fact>(
    tenant: &TenantId,
    kept: &[(usize, T, i64)],
    inserted: &HashSet<String>,
    fates: &mut Vec<(usize, Fate)>,
) {
    for (index, fact, customer) in kept {
        let resource = customer_name(tenant, *customer);
        fates.push(if inserted.contains(fact.id()) {
            (*index, Fate::Accepted { resource })
        } else {
            (*index, Fate::Duplicate { resource })
        });
    }
}

/// Stores market transactions; an id stored before is a duplicate when sent again as stored, and refused when sent
/// with other content (transactions never change).
pub async fn ingest_transactions(
    pool: &PgPool,
    outbox: &Outbox,
    cache: &IdentityCache,
    tenant: &TenantId,
    mut transactions: Vec<(usize, MarketTransaction)>,
    mode: Mode,
) -> Result<Vec<(usize, Fate)>, IngestionError> {
    transactions.sort_by(|a, b| a.1.transaction_id.cmp(&b.1.transaction_id));
    let mut batch = Attaching::begin(
        pool,
        tenant,
        cache,
        transactions.iter().map(|(_, t)| &t.customer),
    )
    .await?;
    let (mut kept, mut fates) = split(transactions, &batch.resolved);
    if mode == Mode::Atomic && !fates.is_empty() {
        return Err(IngestionError::Refused(refusals(&fates, "transactions")));
    }
    let ids: Vec<&str> = kept
        .iter()
        .map(|(_, t, _)| t.transaction_id.as_str())
        .collect();
    let customers: Vec<i64> = kept.iter().map(|(_, _, c)| *c).collect();
    let merchant_ids: Vec<&str> = kept
        .iter()
        .map(|(_, t, _)| t.merchant_id.as_str())
        .collect();
    let merchant_names: Vec<&str> = kept
        .iter()
        .map(|(_, t, _)| t.merchant_name.as_str())
        .collect();
    let categories: Vec<&str> = kept
        .iter()
        .map(|(_, t, _)| t.merchant_category.as_str())
        .collect();
    let amounts: Vec<i64> = kept.iter().map(|(_, t, _)| t.amount.minor_units).collect();
    let currencies: Vec<&str> = kept.iter().map(|(_, t, _)| t.amount.code()).collect();
    let times: Vec<DateTime<Utc>> = kept.iter().map(|(_, t, _)| t.occur_time).collect();
    // Stored ids sent with other content; the customer is left out, since a merge may have moved the stored one to
    // its survivor.
    let changed: Vec<String> = sqlx::query_scalar(
        "SELECT m.transaction_id FROM market_transactions m
         JOIN unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::timestamptz[])
              AS s(transaction_id, merchant_id, merchant_name, merchant_category, amount_minor, currency, occur_time)
           USING (transaction_id)
         WHERE m.tenant_id = $1
           AND (m.merchant_id, m.merchant_name, m.merchant_category, m.amount_minor, m.currency, m.occur_time)
               IS DISTINCT FROM
               (s.merchant_id, s.merchant_name, s.merchant_category, s.amount_minor, s.currency, s.occur_time)",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .bind(&merchant_ids)
    .bind(&merchant_names)
    .bind(&categories)
    .bind(&amounts)
    .bind(&currencies)
    .bind(&times)
    .fetch_all(&mut *batch.tx)
    .await?;
    let inserted: HashSet<String> = sqlx::query_scalar(
        "INSERT INTO market_transactions (tenant_id, transaction_id, customer_id, merchant_id, merchant_name,
                                          merchant_category, amount_minor, currency, occur_time)
         SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[],
                                  $8::text[], $9::timestamptz[]) AS s(transaction_id)
         WHERE s.transaction_id <> ALL($10)
         ON CONFLICT (tenant_id, transaction_id) DO NOTHING
         RETURNING transaction_id",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .bind(&customers)
    .bind(&merchant_ids)
    .bind(&merchant_names)
    .bind(&categories)
    .bind(&amounts)
    .bind(&currencies)
    .bind(&times)
    .bind(&changed)
    .fetch_all(&mut *batch.tx)
    .await?
    .into_iter()
    .collect();
    // Refused after the insert left them out; an atomic batch with any is rolled back with the transaction.
    refuse_changed(
        &mut kept,
        &changed.into_iter().collect(),
        ("transaction", "transaction_id"),
        &mut fates,
    );
    if mode == Mode::Atomic && !fates.is_empty() {
        return Err(IngestionError::Refused(refusals(&fates, "transactions")));
    }

    let changes: Vec<pb::TransactionChange> = kept
        .iter()
        .filter(|(_, t, _)| inserted.contains(&t.transaction_id))
        .map(|(_, t, customer)| pb::TransactionChange {
            transaction_id: t.transaction_id.clone(),
            customer_id: *customer,
            merchant_id: t.merchant_id.clone(),
            merchant_name: t.merchant_name.clone(),
            merchant_category: t.merchant_category.clone(),
            amount: Some(t.amount.to_proto()),
            occur_time: Some(to_timestamp(t.occur_time)),
        })
        .collect();
    fates_of(tenant, &kept, &inserted, &mut fates);
    let event = (!changes.is_empty()).then(|| {
        NewEvent::new(
            tenant,
            "transaction.ingested",
            &pb::TransactionsIngested {
                transactions: changes,
            },
        )
    });
    batch.commit(outbox, cache, tenant, event).await?;
    Ok(fates)
}

/// Stores engagement events; an id stored before is a duplicate when sent again as stored, and refused when sent with
/// other content.
pub async fn ingest_engagement(
    pool: &PgPool,
    outbox: &Outbox,
    cache: &IdentityCache,
    tenant: &TenantId,
    mut engagement: Vec<(usize, EngagementEvent)>,
    mode: Mode,
) -> Result<Vec<(usize, Fate)>, IngestionError> {
    engagement.sort_by(|a, b| a.1.event_id.cmp(&b.1.event_id));
    let mut batch = Attaching::begin(
        pool,
        tenant,
        cache,
        engagement.iter().map(|(_, e)| &e.customer),
    )
    .await?;
    let (mut kept, mut fates) = split(engagement, &batch.resolved);
    if mode == Mode::Atomic && !fates.is_empty() {
        return Err(IngestionError::Refused(refusals(&fates, "events")));
    }
    let ids: Vec<&str> = kept.iter().map(|(_, e, _)| e.event_id.as_str()).collect();
    let customers: Vec<i64> = kept.iter().map(|(_, _, c)| *c).collect();
    let kinds: Vec<i16> = kept.iter().map(|(_, e, _)| e.kind as i16).collect();
    let times: Vec<DateTime<Utc>> = kept.iter().map(|(_, e, _)| e.occur_time).collect();
    let sources: Vec<&str> = kept.iter().map(|(_, e, _)| e.source.as_str()).collect();
    let properties: Vec<serde_json::Value> = kept
        .iter()
        .map(|(_, e, _)| serde_json::to_value(&e.properties).unwrap_or_default())
        .collect();
    // Stored ids sent with other content; the customer is left out, since a merge may have moved the stored one to
    // its survivor.
    let changed: Vec<String> = sqlx::query_scalar(
        "SELECT m.event_id FROM engagement_events m
         JOIN unnest($2::text[], $3::smallint[], $4::timestamptz[], $5::text[], $6::jsonb[])
              AS s(event_id, type, occur_time, source, properties)
           USING (event_id)
         WHERE m.tenant_id = $1
           AND (m.type, m.occur_time, m.source, m.properties)
               IS DISTINCT FROM (s.type, s.occur_time, s.source, s.properties)",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .bind(&kinds)
    .bind(&times)
    .bind(&sources)
    .bind(&properties)
    .fetch_all(&mut *batch.tx)
    .await?;
    let inserted: HashSet<String> = sqlx::query_scalar(
        "INSERT INTO engagement_events (tenant_id, event_id, customer_id, type, occur_time, source, properties)
         SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::smallint[], $5::timestamptz[], $6::text[], $7::jsonb[])
                           AS s(event_id)
         WHERE s.event_id <> ALL($8)
         ON CONFLICT (tenant_id, event_id) DO NOTHING
         RETURNING event_id",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .bind(&customers)
    .bind(&kinds)
    .bind(&times)
    .bind(&sources)
    .bind(&properties)
    .bind(&changed)
    .fetch_all(&mut *batch.tx)
    .await?
    .into_iter()
    .collect();
    // Refused after the insert left them out; an atomic batch with any is rolled back with the transaction.
    refuse_changed(
        &mut kept,
        &changed.into_iter().collect(),
        ("engagement event", "event_id"),
        &mut fates,
    );
    if mode == Mode::Atomic && !fates.is_empty() {
        return Err(IngestionError::Refused(refusals(&fates, "events")));
    }

    let changes: Vec<pb::EngagementChange> = kept
        .iter()
        .filter(|(_, e, _)| inserted.contains(&e.event_id))
        .map(|(_, e, customer)| pb::EngagementChange {
            event_id: e.event_id.clone(),
            customer_id: *customer,
            r#type: e.kind as i32,
            occur_time: Some(to_timestamp(e.occur_time)),
            source: e.source.clone(),
            properties: e.properties.clone().into_iter().collect(),
        })
        .collect();
    fates_of(tenant, &kept, &inserted, &mut fates);
    let event = (!changes.is_empty()).then(|| {
        NewEvent::new(
            tenant,
            "engagement.ingested",
            &pb::EngagementIngested { events: changes },
        )
    });
    batch.commit(outbox, cache, tenant, event).await?;
    Ok(fates)
}
