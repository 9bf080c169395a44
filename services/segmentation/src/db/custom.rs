//! A tenant's custom segments. Ids are allocated per tenant from 1000 up and never reused; a deleted segment keeps
//! its row (with `delete_time`) so its history stays named.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::domain::segments::{FIRST_CUSTOM, SegmentId};

/// A custom segment as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CustomRow {
    pub segment: SegmentId,
    pub slug: String,
    pub display_name: String,
    pub description: String,
    pub rule: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub delete_time: Option<DateTime<Utc>>,
}

/// The new text of a custom segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub display_name: String,
    pub description: String,
    pub rule: String,
}

const COLUMNS: &str =
    "segment, slug, display_name, description, rule, create_time, update_time, delete_time";

/// Every custom segment of the tenant, deleted ones included, in id order.
pub async fn all(conn: &mut PgConnection, tenant: &str) -> Result<Vec<CustomRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM custom_segments WHERE tenant_id = $1 ORDER BY segment"
    )))
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await
}

/// The live segment with this slug.
pub async fn get(
    conn: &mut PgConnection,
    tenant: &str,
    slug: &str,
) -> Result<Option<CustomRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM custom_segments WHERE tenant_id = $1 AND slug = $2 AND delete_time IS NULL"
    )))
    .bind(tenant)
    .bind(slug)
    .fetch_optional(&mut *conn)
    .await
}

/// How many live custom segments the tenant has, and the last id it allocated (deleted segments' included).
pub async fn usage(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<(i64, Option<SegmentId>), sqlx::Error> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE delete_time IS NULL), max(segment) FROM custom_segments
         WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(&mut *conn)
    .await
}

/// Creates a segment; `None` when a live one has the slug. The caller holds the tenant's membership version row,
/// which serialises id allocation.
pub async fn insert(
    conn: &mut PgConnection,
    tenant: &str,
    slug: &str,
    definition: &Definition,
    now: DateTime<Utc>,
) -> Result<Option<CustomRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO custom_segments (tenant_id, segment, slug, display_name, description, rule, create_time,
                                      update_time)
         SELECT $1, coalesce(max(segment) + 1, $7), $2, $3, $4, $5, $6, $6
         FROM custom_segments WHERE tenant_id = $1
         ON CONFLICT (tenant_id, slug) WHERE delete_time IS NULL DO NOTHING
         RETURNING {COLUMNS}"
    )))
    .bind(tenant)
    .bind(slug)
    .bind(&definition.display_name)
    .bind(&definition.description)
    .bind(&definition.rule)
    .bind(now)
    .bind(FIRST_CUSTOM)
    .fetch_optional(&mut *conn)
    .await
}

/// Replaces a live segment's definition; `None` when there is none with the slug.
pub async fn update(
    conn: &mut PgConnection,
    tenant: &str,
    slug: &str,
    definition: &Definition,
    now: DateTime<Utc>,
) -> Result<Option<CustomRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE custom_segments SET display_name = $3, description = $4, rule = $5, update_time = $6
         WHERE tenant_id = $1 AND slug = $2 AND delete_time IS NULL
         RETURNING {COLUMNS}"
    )))
    .bind(tenant)
    .bind(slug)
    .bind(&definition.display_name)
    .bind(&definition.description)
    .bind(&definition.rule)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
}

/// The custom segment that had `slug` at `at`: a deleted one keeps its history under the name it had.
pub async fn live_at(
    conn: &mut PgConnection,
    tenant: &str,
    slug: &str,
    at: DateTime<Utc>,
) -> Result<Option<SegmentId>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT segment FROM custom_segments
         WHERE tenant_id = $1 AND slug = $2 AND create_time <= $3 AND (delete_time IS NULL OR delete_time > $3)",
    )
    .bind(tenant)
    .bind(slug)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await
}

/// Marks a live segment deleted; `None` when there is none with the slug.
pub async fn delete(
    conn: &mut PgConnection,
    tenant: &str,
    slug: &str,
    now: DateTime<Utc>,
) -> Result<Option<CustomRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE custom_segments SET delete_time = $3
         WHERE tenant_id = $1 AND slug = $2 AND delete_time IS NULL
         RETURNING {COLUMNS}"
    )))
    .bind(tenant)
    .bind(slug)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await
}
