//! Postgres pools: one per service, confined to the service's own schema.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::PostgresConfig;

/// A lazily connecting pool whose connections use `schema` as their search path, so a service's unqualified table
/// names resolve to its own tables only. Connecting lazily lets a service start while Postgres is still coming up;
/// readiness reports NOT_SERVING until it answers.
pub fn pool(config: &PostgresConfig, schema: &str) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(&config.url)?
        .options([("search_path", schema)])
        .application_name(&format!("boomerang-{schema}"));
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(Duration::from_millis(config.acquire_timeout_ms))
        .connect_lazy_with(options))
}

/// Creates the database `url` names if it does not exist yet, connecting to the server's `postgres` database to do
/// so. Lets a first `boomerang migrate` work on a bare server.
pub async fn ensure_database(url: &str) -> Result<(), sqlx::Error> {
    use sqlx::ConnectOptions;
    let options = PgConnectOptions::from_str(url)?;
    match options.connect().await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("3D000") => {
            let name = options.get_database().unwrap_or("boomerang").to_owned();
            let mut admin = options.database("postgres").connect().await?;
            // The name comes from the operator's own configuration; quoting keeps it one identifier.
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
                .execute(&mut admin)
                .await?;
            tracing::info!(database = %name, "created database");
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Creates `schema` if it does not exist (run before a service's migrations).
pub async fn ensure_schema(pool: &PgPool, schema: &str) -> Result<(), sqlx::Error> {
    // Schema names come from code, never from callers; checking them keeps the statement safe to build.
    assert!(
        schema.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "schema names are lower-case identifiers"
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS {schema}"
    )))
    .execute(pool)
    .await?;
    Ok(())
}
