//! Segmentation's tables: set-based queries, each in the caller's transaction.

pub mod custom;
pub mod features;
pub mod memberships;
pub mod models;
pub mod projection;
pub mod scoring;
pub mod settings;

/// A read-only transaction that sees one snapshot throughout (exports, previews, model fits).
pub async fn snapshot(
    pool: &sqlx::PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}
