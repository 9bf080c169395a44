//! The segmentation cache as the benchmarks see it: waiting for it to be complete, and removing a run's keys.

use std::time::Duration;

use redis::aio::MultiplexedConnection;

/// Waits until the tenant's `ready` marker holds a version (the cache is complete).
pub async fn wait_complete(
    conn: &mut MultiplexedConnection,
    ready_key: &str,
) -> anyhow::Result<()> {
    loop {
        let ready: Option<String> = redis::cmd("GET").arg(ready_key).query_async(conn).await?;
        if ready.is_some_and(|v| v.parse::<i64>().is_ok()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deletes every key under `prefix`, a batch at a time (never KEYS, which blocks Redis on large key spaces).
pub async fn delete_prefix(conn: &mut MultiplexedConnection, prefix: &str) -> anyhow::Result<()> {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK").arg(keys).exec_async(conn).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
