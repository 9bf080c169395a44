//! Erasure: removing a person's data, keeping only suppression hashes and anonymous order totals.

use boomerang_auth::TenantId;
use boomerang_events::{NewEvent, Outbox};
use boomerang_proto::ingestion as pb;
use sqlx::PgPool;

use super::lock_identity;
use crate::domain::identifier::{Identifier, Kind};

/// What an erasure removed.
#[derive(Debug)]
pub struct Erased {
    /// The customer and everyone merged into it.
    pub customers: Vec<i64>,
    pub suppressed_identifiers: i32,
}

/// Erases the person behind customer `id` (following merges). `None` when no such customer exists or ever existed;
/// erasing an erased customer again returns what the first erasure removed, minus the counts it no longer knows.
pub async fn erase(
    pool: &PgPool,
    outbox: &Outbox,
    tenant: &TenantId,
    id: i64,
) -> Result<Option<Erased>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock_identity(&mut tx, tenant, true).await?;
    let erased_before: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM erasures WHERE tenant_id = $1 AND customer_id = $2)",
    )
    .bind(tenant.as_str())
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    if erased_before {
        return Ok(Some(Erased {
            customers: vec![id],
            suppressed_identifiers: 0,
        }));
    }
    let survivor: Option<Option<i64>> =
        sqlx::query_scalar("SELECT merged_into FROM customers WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(survivor) = survivor else {
        return Ok(None);
    };
    let survivor = survivor.unwrap_or(id);
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM customers WHERE tenant_id = $1 AND (id = $2 OR merged_into = $2) ORDER BY id",
    )
    .bind(tenant.as_str())
    .bind(survivor)
    .fetch_all(&mut *tx)
    .await?;

    let identifiers: Vec<(i16, String)> = sqlx::query_as(
        "SELECT kind, value FROM identifiers WHERE tenant_id = $1 AND customer_id = ANY($2)",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let hashes: Vec<Vec<u8>> = identifiers
        .into_iter()
        .filter_map(|(kind, value)| Some(Identifier::from_stored(Kind::from_code(kind)?, value)))
        .map(|identifier| identifier.suppression_hash(tenant))
        .collect();
    sqlx::query(
        "INSERT INTO suppressions (tenant_id, hash) SELECT $1, * FROM unnest($2::bytea[]) ON CONFLICT DO NOTHING",
    )
    .bind(tenant.as_str())
    .bind(&hashes)
    .execute(&mut *tx)
    .await?;

    // The erased person's identifiers disappear: caches of owners read before this commit must not be trusted.
    super::bump_identity_epoch(&mut tx, tenant).await?;
    let statements = [
        "DELETE FROM identifiers WHERE tenant_id = $1 AND customer_id = ANY($2)",
        "DELETE FROM consents WHERE tenant_id = $1 AND customer_id = ANY($2)",
        "DELETE FROM consent_history WHERE tenant_id = $1 AND customer_id = ANY($2)",
        "DELETE FROM market_transactions WHERE tenant_id = $1 AND customer_id = ANY($2)",
        "DELETE FROM engagement_events WHERE tenant_id = $1 AND customer_id = ANY($2)",
        "DELETE FROM identity_conflicts
         WHERE tenant_id = $1 AND (customer_id = ANY($2) OR other_customer_id = ANY($2))",
        "DELETE FROM merges WHERE tenant_id = $1 AND (survivor_id = ANY($2) OR merged_id = ANY($2))",
        // Orders stay as anonymous revenue: amounts, dates and stores without a person. Orders have no customer index
        // (it would slow the bulk path for this rare operation), so this scans the tenant's orders.
        "UPDATE orders SET customer_id = NULL, update_time = now() WHERE tenant_id = $1 AND customer_id = ANY($2)",
        "DELETE FROM customers WHERE tenant_id = $1 AND id = ANY($2)",
        "INSERT INTO erasures (tenant_id, customer_id) SELECT $1, * FROM unnest($2::bigint[])",
    ];
    for statement in statements {
        sqlx::query(statement)
            .bind(tenant.as_str())
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
    }
    outbox
        .publish(
            &mut tx,
            vec![NewEvent::new(
                tenant,
                "customer.erased",
                &pb::CustomerErased {
                    customer_ids: ids.clone(),
                },
            )],
        )
        .await?;
    tx.commit().await?;
    Ok(Some(Erased {
        customers: ids,
        suppressed_identifiers: hashes.len() as i32,
    }))
}
