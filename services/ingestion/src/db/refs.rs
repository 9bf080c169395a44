//! Resolving the customer an item names by identifier, creating customers for identifiers nobody owns yet.

use std::collections::{HashMap, HashSet};

use boomerang_auth::TenantId;
use boomerang_events::{NewEvent, Outbox};
use boomerang_proto::ingestion as pb;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::cache::IdentityCache;
use crate::domain::identifier::{Identifier, Kind};

/// Customers of the identifiers a batch names.
#[derive(Debug, Default)]
pub struct Resolved {
    pub customers: HashMap<Identifier, i64>,
    /// Identifiers of erased people: items naming them are refused.
    pub suppressed: HashSet<Identifier>,
    /// Customers created for identifiers nobody owned, to announce as `customer.upserted`.
    pub created: Vec<pb::CustomerChange>,
}

impl Resolved {
    /// The customer of an item naming `identifier`: `Ok(None)` for items without one (guest orders), `Err` with the
    /// refusal reason when it belongs to an erased person.
    pub fn customer_of(&self, identifier: Option<&Identifier>) -> Result<Option<i64>, String> {
        match identifier {
            None => Ok(None),
            Some(id) if self.suppressed.contains(id) => Err(suppressed_reason(id)),
            Some(id) => Ok(self.customers.get(id).copied()),
        }
    }

    /// The `customer.upserted` event announcing the customers this resolution created, if it created any.
    pub fn created_event(&mut self, tenant: &TenantId) -> Option<NewEvent> {
        let customers = std::mem::take(&mut self.created);
        (!customers.is_empty()).then(|| {
            NewEvent::new(
                tenant,
                "customer.upserted",
                &pb::CustomersUpserted { customers },
            )
        })
    }
}

/// A write that attaches data (orders, spend, engagement, consent) to customers named by identifier: its
/// transaction, which holds the tenant's identity lock shared, the identity epoch it read, and the customers the
/// identifiers resolved to.
pub struct Attaching {
    pub tx: Transaction<'static, Postgres>,
    epoch: i64,
    pub resolved: Resolved,
}

impl Attaching {
    /// Begins the transaction and resolves the customers of `identifiers`.
    pub async fn begin<'a>(
        pool: &PgPool,
        tenant: &TenantId,
        cache: &IdentityCache,
        identifiers: impl IntoIterator<Item = &'a Identifier>,
    ) -> Result<Self, sqlx::Error> {
        let mut tx = pool.begin().await?;
        let (epoch, resolved) = resolve(&mut tx, tenant, cache, identifiers).await?;
        Ok(Self {
            tx,
            epoch,
            resolved,
        })
    }

    /// Publishes the customers this write created and `event`, commits, and only then lets the cache keep the
    /// owners it read.
    pub async fn commit(
        mut self,
        outbox: &Outbox,
        cache: &IdentityCache,
        tenant: &TenantId,
        event: Option<NewEvent>,
    ) -> Result<(), sqlx::Error> {
        let events: Vec<NewEvent> = self
            .resolved
            .created_event(tenant)
            .into_iter()
            .chain(event)
            .collect();
        outbox.publish(&mut self.tx, events).await?;
        self.tx.commit().await?;
        cache.remember(tenant, self.epoch, &self.resolved.customers);
        Ok(())
    }
}

/// Finds (or creates) the customer of each identifier: from `cache` where it holds them for the tenant's current
/// `epoch`, else from Postgres. Takes the tenant's identity lock shared and returns the epoch with the result;
/// remember the result in the cache once the transaction has committed.
pub async fn resolve<'a>(
    conn: &mut PgConnection,
    tenant: &TenantId,
    cache: &IdentityCache,
    identifiers: impl IntoIterator<Item = &'a Identifier>,
) -> Result<(i64, Resolved), sqlx::Error> {
    let epoch = super::lock_identity_shared(conn, tenant).await?;
    let mut wanted: Vec<&Identifier> = identifiers.into_iter().collect();
    // Sorted so concurrent batches lock index entries in the same order and cannot deadlock.
    wanted.sort();
    wanted.dedup();
    let mut resolved = Resolved::default();
    if wanted.is_empty() {
        return Ok((epoch, resolved));
    }
    let (mut found, unknown) = cache.owners(tenant, epoch, wanted);
    if !unknown.is_empty() {
        found.extend(lookup(conn, tenant, &unknown).await?);
    }
    let missing: Vec<&Identifier> = unknown
        .into_iter()
        .filter(|id| !found.contains_key(*id))
        .collect();
    resolved.customers = found;
    if missing.is_empty() {
        return Ok((epoch, resolved));
    }

    resolved.suppressed = suppressed(conn, tenant, &missing).await?;
    let to_create: Vec<&Identifier> = missing
        .into_iter()
        .filter(|id| !resolved.suppressed.contains(*id))
        .collect();
    if to_create.is_empty() {
        return Ok((epoch, resolved));
    }
    let (kinds, values) = columns(&to_create);
    // The customer row is created only for identifiers this statement actually inserted, so a concurrent batch that
    // created the same one first leaves no orphan behind.
    let created: Vec<(i16, String, i64)> = sqlx::query_as(
        "WITH new AS (
             SELECT kind, value, nextval('customer_id_seq') AS id
             FROM unnest($2::smallint[], $3::text[]) AS t(kind, value)
         ), ins AS (
             INSERT INTO identifiers (tenant_id, kind, value, customer_id)
             SELECT $1, kind, value, id FROM new
             ON CONFLICT DO NOTHING
             RETURNING kind, value, customer_id
         ), customers AS (
             INSERT INTO customers (tenant_id, id) SELECT $1, customer_id FROM ins
         )
         SELECT kind, value, customer_id FROM ins",
    )
    .bind(tenant.as_str())
    .bind(&kinds)
    .bind(&values)
    .fetch_all(&mut *conn)
    .await?;
    for (kind, value, customer_id) in created {
        let Some(kind) = Kind::from_code(kind) else {
            continue;
        };
        resolved.created.push(pb::CustomerChange {
            customer_id,
            created: true,
            external_id: if kind == Kind::External {
                value.clone()
            } else {
                String::new()
            },
            ..Default::default()
        });
        resolved
            .customers
            .insert(Identifier::from_stored(kind, value), customer_id);
    }
    // Identifiers a concurrent batch created between our lookup and our insert.
    let raced: Vec<&Identifier> = to_create
        .into_iter()
        .filter(|id| !resolved.customers.contains_key(*id))
        .collect();
    if !raced.is_empty() {
        resolved
            .customers
            .extend(lookup(conn, tenant, &raced).await?);
    }
    Ok((epoch, resolved))
}

async fn lookup(
    conn: &mut PgConnection,
    tenant: &TenantId,
    identifiers: &[&Identifier],
) -> Result<HashMap<Identifier, i64>, sqlx::Error> {
    let (kinds, values) = columns(identifiers);
    let rows: Vec<(i16, String, i64)> = sqlx::query_as(
        "SELECT i.kind, i.value, i.customer_id
         FROM unnest($2::smallint[], $3::text[]) AS r(kind, value)
         JOIN identifiers i ON i.tenant_id = $1 AND i.kind = r.kind AND i.value = r.value",
    )
    .bind(tenant.as_str())
    .bind(&kinds)
    .bind(&values)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(kind, value, customer)| {
            Some((
                Identifier::from_stored(Kind::from_code(kind)?, value),
                customer,
            ))
        })
        .collect())
}

/// Which of `identifiers` belong to erased people.
pub async fn suppressed(
    conn: &mut PgConnection,
    tenant: &TenantId,
    identifiers: &[&Identifier],
) -> Result<HashSet<Identifier>, sqlx::Error> {
    let hashes: Vec<Vec<u8>> = identifiers
        .iter()
        .map(|id| id.suppression_hash(tenant))
        .collect();
    let found: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT hash FROM suppressions WHERE tenant_id = $1 AND hash = ANY($2)")
            .bind(tenant.as_str())
            .bind(&hashes)
            .fetch_all(conn)
            .await?;
    let found: HashSet<Vec<u8>> = found.into_iter().collect();
    Ok(identifiers
        .iter()
        .zip(hashes)
        .filter(|(_, hash)| found.contains(hash))
        .map(|(id, _)| (*id).clone())
        .collect())
}

/// Kind and value columns for binding identifiers as arrays.
pub fn columns(identifiers: &[&Identifier]) -> (Vec<i16>, Vec<String>) {
    identifiers
        .iter()
        .map(|id| (id.kind().code(), id.value().to_owned()))
        .unzip()
}

/// The refusal reason for an item naming an erased person.
pub fn suppressed_reason(identifier: &Identifier) -> String {
    format!(
        "{} belongs to a person whose data was erased",
        identifier.kind().name()
    )
}
