//! Ingestion's queries. Every statement filters by tenant; bulk paths are set-based (`unnest` of arrays bound as
//! parameters), never a query per item.

pub mod activity;
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

/// The resource name of a customer.
pub fn customer_name(tenant: &TenantId, id: i64) -> String {
    format!("tenants/{tenant}/customers/{id}")
}
