use std::time::Duration;

use boomerang_service_kit::Shutdown;
use sqlx::PgPool;
use sqlx::postgres::PgListener;

use crate::Outbox;

/// Most rows stamped per transaction, so one stamp never holds locks for long.
const STAMP_BATCH: i64 = 5_000;
/// How often the sequencer looks for work when no notification arrives (a missed notification, a listener
/// reconnecting): an upper bound on the delay, not the normal path.
const FALLBACK_POLL: Duration = Duration::from_millis(500);
/// How often old events are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// Gives committed outbox rows their positions, until shutdown. Any number of replicas may run it; the sequencer row
/// lock lets one stamp at a time. Events older than `retention` are deleted.
pub async fn run_sequencer(pool: PgPool, outbox: Outbox, retention: Duration, shutdown: Shutdown) {
    let mut listener = None;
    let mut last_retention = tokio::time::Instant::now();
    while !shutdown.is_triggered() {
        if listener.is_none() {
            listener = listen(&pool, &outbox.written_channel()).await;
        }
        loop {
            match stamp(&pool, &outbox).await {
                Ok(stamped) if stamped == STAMP_BATCH => continue,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(schema = outbox.schema(), error = %err, "sequencing events failed");
                    break;
                }
            }
        }
        if last_retention.elapsed() >= RETENTION_EVERY {
            last_retention = tokio::time::Instant::now();
            if let Err(err) = delete_expired(&pool, retention).await {
                tracing::warn!(schema = outbox.schema(), error = %err, "deleting expired events failed");
            }
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.recv().await.map(drop),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = notified => if let Err(err) = result {
                tracing::warn!(schema = outbox.schema(), error = %err, "outbox listener lost; reconnecting");
                listener = None;
            },
            () = tokio::time::sleep(FALLBACK_POLL) => {}
            () = shutdown.wait() => {}
        }
    }
}

pub(crate) async fn listen(pool: &PgPool, channel: &str) -> Option<PgListener> {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::debug!(error = %err, channel, "cannot connect listener; polling instead");
            return None;
        }
    };
    match listener.listen(channel).await {
        Ok(()) => Some(listener),
        Err(err) => {
            tracing::debug!(error = %err, channel, "cannot listen; polling instead");
            None
        }
    }
}

/// Stamps one batch of committed, unsequenced rows; returns how many.
async fn stamp(pool: &PgPool, outbox: &Outbox) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The row lock serialises sequencers: the next stamp starts only after this one commits.
    let last: i64 =
        sqlx::query_scalar("SELECT last_position FROM outbox_sequencer WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
    let stamped: i64 = sqlx::query_scalar(
        "WITH batch AS (
             SELECT id, row_number() OVER (ORDER BY id) AS n
             FROM (SELECT id FROM outbox WHERE position IS NULL ORDER BY id LIMIT $2) AS pending
         ), stamped AS (
             UPDATE outbox AS o SET position = $1 + batch.n
             FROM batch WHERE o.id = batch.id
             RETURNING 1
         )
         SELECT count(*) FROM stamped",
    )
    .bind(last)
    .bind(STAMP_BATCH)
    .fetch_one(&mut *tx)
    .await?;
    if stamped > 0 {
        let head = last + stamped;
        sqlx::query("UPDATE outbox_sequencer SET last_position = $1 WHERE id = 1")
            .bind(head)
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(outbox.sequenced_channel())
            .bind(head.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(stamped)
}

async fn delete_expired(pool: &PgPool, retention: Duration) -> Result<(), sqlx::Error> {
    let retention_secs = retention.as_secs_f64();
    sqlx::query(
        "DELETE FROM outbox WHERE id IN (
             SELECT id FROM outbox
             WHERE position IS NOT NULL AND create_time < now() - make_interval(secs => $1)
             LIMIT 10000
         )",
    )
    .bind(retention_secs)
    .execute(pool)
    .await?;
    Ok(())
}
