//! Ingestion's queries. Every statement filters by tenant; bulk paths are set-based (`unnest` of arrays bound as
//! parameters), never a query per item.

pub mod activity;
pub mod cache;
pub mod consent;
pub mod customers;
pub mod erasure;
pub mod orders;
pub mod refs;

use boomerang_auth::TenantId;
use sqlx::PgConnection;

/// Serialises identity changes per tenant. Customer upserts and erasure take it exclusively (they merge and
/// re-key); writes that only attach data to customers take it shared, so they run concurrently with each other but
/// never interleave with a merge that would leave them pointing at a merged-away customer.
pub async fn lock_identity(
    conn: &mut PgConnection,
    tenant: &TenantId,
    exclusive: bool,
) -> Result<(), sqlx::Error> {
    let sql = if exclusive {
        "SELECT pg_advisory_xact_lock(hashtextextended('ingestion.identity:' || $1, 0))"
    } else {
        "SELECT pg_advisory_xact_lock_shared(hashtextextended('ingestion.identity:' || $1, 0))"
    };
    sqlx::query(sql).bind(tenant.as_str()).execute(conn).await?;
    Ok(())
}

/// Takes the tenant's identity lock shared and returns the tenant's identity epoch, which every merge and erasure
/// bumps. The epoch is read by its own statement, after the lock is granted: a statement's snapshot predates its own
/// lock wait, so reading it in the locking statement could miss a merge that committed during the wait.
pub async fn lock_identity_shared(
    conn: &mut PgConnection,
    tenant: &TenantId,
) -> Result<i64, sqlx::Error> {
    lock_identity(conn, tenant, false).await?;
    let epoch: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM identity_epochs WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(epoch.unwrap_or(0))
}

/// Moves the tenant's identity epoch on: identifiers changed owner (merge) or disappeared (erasure). Call with the
/// identity lock held exclusively, in the transaction that makes the change.
pub async fn bump_identity_epoch(
    conn: &mut PgConnection,
    tenant: &TenantId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO identity_epochs (tenant_id, epoch) VALUES ($1, 1)
         ON CONFLICT (tenant_id) DO UPDATE SET epoch = identity_epochs.epoch + 1",
    )
    .bind(tenant.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// The resource name of a customer.
pub fn customer_name(tenant: &TenantId, id: i64) -> String {
    format!("tenants/{tenant}/customers/{id}")
}
