//! Customer features: refreshed set-based from the projected orders and transactions of the customers that changed,
//! read in bulk (COPY) by the full recompute, and the log of whose rows each membership version wrote, which brings
//! the copies kept in memory (`population.rs`) up to date.

use std::sync::Arc;

use chrono::NaiveDate;
use futures::TryStreamExt;
use sqlx::{PgConnection, PgPool};

use crate::domain::evaluate::{Evaluation, Features};
use crate::domain::lifecycle::ShareOfWallet;
use crate::domain::rupture;
use crate::domain::segments::SegmentId;
use crate::domain::settings::Settings;
use crate::population::{self, Held, Population};

/// A customer's stored evaluation: what its memberships are now and when they next change by time alone. The RFM
/// code is not stored: it follows from the features and the current boundaries, and storing it would rewrite most
/// rows whenever the boundaries move.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub segments: Vec<SegmentId>,
    pub due: Option<NaiveDate>,
}

impl Stored {
    /// Whether this is what `evaluation` would store.
    pub fn matches(&self, evaluation: &Evaluation) -> bool {
        self.segments == evaluation.segments && self.due == evaluation.due
    }

    pub fn of(evaluation: &Evaluation) -> Self {
        Self {
            segments: evaluation.segments.clone(),
            due: evaluation.due,
        }
    }
}

/// One customer's features as the refresh query computes them.
#[derive(sqlx::FromRow)]
struct FeatureRow {
    customer_id: i64,
    frequency: i32,
    monetary: i64,
    first_day_spend: i64,
    first_day: Option<NaiveDate>,
    last_day: Option<NaiveDate>,
    days: Option<Vec<NaiveDate>>,
    first_channel: i16,
    first_category: Option<String>,
    birth_date: Option<NaiveDate>,
    consent: i16,
    category_day: Option<NaiveDate>,
    tenant_recent: i64,
    all_recent: i64,
    tenant_before: i64,
    all_before: i64,
    share_due: Option<NaiveDate>,
    next_order_day: Option<NaiveDate>,
    last_engagement_day: Option<NaiveDate>,
    engagements: i64,
}

/// Computes the features of `customers` on `today` from their orders, transactions, engagement, birth date and
/// consents.
/// Customers with none of them come back with empty features.
pub async fn compute(
    conn: &mut PgConnection,
    tenant: &str,
    customers: &[i64],
    today: NaiveDate,
    settings: &Settings,
) -> Result<Vec<Features>, sqlx::Error> {
    let rows: Vec<FeatureRow> = sqlx::query_as(
        "WITH ids AS MATERIALIZED (SELECT DISTINCT unnest($2::int8[]) AS customer_id),
         lo AS (
             SELECT ids.customer_id, d.day, o.amount_minor, o.channel, o.category, o.place_time, o.order_id
             FROM ids
                  CROSS JOIN LATERAL (SELECT * FROM orders o
                                      WHERE o.tenant_id = $1 AND o.customer_id = ids.customer_id AND o.eligible
                                      OFFSET 0) o
                  CROSS JOIN LATERAL (SELECT (o.place_time AT TIME ZONE 'UTC')::date AS day) d
             WHERE (d.day + make_interval(years => $4))::date > $3::date),
         eo AS (
             SELECT lo.*, min(day) OVER (PARTITION BY customer_id) AS first_day FROM lo WHERE day <= $3::date),
         nx AS (SELECT customer_id, min(day) AS next_order_day FROM lo WHERE day > $3::date GROUP BY customer_id),
         o AS (
             SELECT customer_id, count(*)::int4 AS frequency, sum(amount_minor)::int8 AS monetary,
                    min(day) AS first_day, max(day) AS last_day, array_agg(DISTINCT day) AS days,
                    sum(amount_minor) FILTER (WHERE day = first_day)::int8 AS first_day_spend,
                    (array_agg(channel ORDER BY place_time, order_id))[1] AS first_channel,
                    (array_agg(category ORDER BY place_time, order_id))[1] AS first_category
             FROM eo GROUP BY customer_id),
         t AS (
             SELECT t.customer_id,
                    max(d.day) FILTER (WHERE (d.day + make_interval(months => $7))::date > $3::date
                                             AND d.day <= $3::date AND t.amount_minor > 0) AS category_day,
                    coalesce(sum(t.amount_minor) FILTER (WHERE d.recent AND t.merchant_id = ANY($6)), 0)::int8 AS tenant_recent,
                    coalesce(sum(t.amount_minor) FILTER (WHERE d.recent), 0)::int8 AS all_recent,
                    coalesce(sum(t.amount_minor) FILTER (WHERE d.before AND t.merchant_id = ANY($6)), 0)::int8 AS tenant_before,
                    coalesce(sum(t.amount_minor) FILTER (WHERE d.before), 0)::int8 AS all_before,
                    least(min(d.day) FILTER (WHERE d.day > $3::date),
                          min((d.day + make_interval(months => $8))::date)
                              FILTER (WHERE (d.day + make_interval(months => $8))::date > $3::date),
                          min((d.day + make_interval(months => 2 * $8))::date)
                              FILTER (WHERE (d.day + make_interval(months => 2 * $8))::date > $3::date)) AS share_due
             FROM ids
                  CROSS JOIN LATERAL (SELECT * FROM transactions t
                                      WHERE t.tenant_id = $1 AND t.customer_id = ids.customer_id OFFSET 0) t
                  CROSS JOIN LATERAL (
                      SELECT (t.occur_time AT TIME ZONE 'UTC')::date AS day) day0
                  CROSS JOIN LATERAL (
                      SELECT day0.day,
                             (day0.day + make_interval(months => $8))::date > $3::date AND day0.day <= $3::date
                                 AS recent,
                             (day0.day + make_interval(months => 2 * $8))::date > $3::date
                                 AND (day0.day + make_interval(months => $8))::date <= $3::date AS before) d
             WHERE t.category = $5 AND $5 <> ''
             GROUP BY t.customer_id),
         k AS (
             SELECT k.customer_id,
                    sum(CASE k.channel WHEN 1 THEN 1 WHEN 2 THEN 2 WHEN 3 THEN 4 ELSE 0 END)::int2 AS consent
             FROM ids
                  CROSS JOIN LATERAL (SELECT * FROM consents k
                                      WHERE k.tenant_id = $1 AND k.customer_id = ids.customer_id AND k.granted
                                      OFFSET 0) k
             GROUP BY k.customer_id)
         SELECT ids.customer_id, coalesce(o.frequency, 0) AS frequency, coalesce(o.monetary, 0) AS monetary,
                coalesce(o.first_day_spend, 0) AS first_day_spend, o.first_day, o.last_day, o.days,
                coalesce(o.first_channel, 0::int2) AS first_channel, o.first_category, c.birth_date,
                coalesce(k.consent, 0::int2) AS consent, t.category_day,
                coalesce(t.tenant_recent, 0) AS tenant_recent, coalesce(t.all_recent, 0) AS all_recent,
                coalesce(t.tenant_before, 0) AS tenant_before, coalesce(t.all_before, 0) AS all_before,
                t.share_due, nx.next_order_day, (g.last_time AT TIME ZONE 'UTC')::date AS last_engagement_day,
                coalesce(g.events, 0)::int8 AS engagements
         FROM ids LEFT JOIN o USING (customer_id) LEFT JOIN t USING (customer_id) LEFT JOIN k USING (customer_id)
              LEFT JOIN nx USING (customer_id)
              LEFT JOIN LATERAL (SELECT g.last_time, g.events FROM engagement g
                                 WHERE g.tenant_id = $1 AND g.customer_id = ids.customer_id OFFSET 0) g ON true
              LEFT JOIN LATERAL (SELECT c.birth_date FROM customers c
                                 WHERE c.tenant_id = $1 AND c.customer_id = ids.customer_id OFFSET 0) c ON true",
    )
    .bind(tenant)
    .bind(customers)
    .bind(today)
    .bind(settings.lookback_years as i32)
    .bind(&settings.merchant_category)
    .bind(&settings.own_merchant_ids)
    .bind(settings.non_customer_months as i32)
    .bind(settings.share_window_months as i32)
    // Planned for each call's own customers. Each table is read through a LATERAL lookup per customer (OFFSET 0
    // keeps the planner from flattening it into a join), so that statistics taken while a fresh tenant's tables were
    // small cannot turn it into a scan of every order of the tenant per batch (measured in bench live: 250 ms instead
    // of a few per batch of 100 customers).
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let days = row.days.unwrap_or_default();
            Features {
                customer_id: row.customer_id,
                frequency: row.frequency as u32,
                monetary: row.monetary,
                first_day_spend: row.first_day_spend,
                first_day: row.first_day,
                last_day: row.last_day,
                purchase_days: days.len() as u32,
                typical_gap: rupture::typical_gap(&days, row.frequency as u32),
                first_channel: row.first_channel,
                first_category: row.first_category,
                birth_date: row.birth_date,
                consent: row.consent as u8,
                category_day: row.category_day,
                share: ShareOfWallet {
                    tenant_recent: row.tenant_recent,
                    all_recent: row.all_recent,
                    tenant_before: row.tenant_before,
                    all_before: row.all_before,
                },
                share_due: row.share_due,
                next_order_day: row.next_order_day,
                last_engagement_day: row.last_engagement_day,
                engagements: row.engagements,
            }
        })
        .collect())
}

/// Makes every customer of the tenant due `today`, so the due sweep computes their features again.
pub async fn all_due(
    conn: &mut PgConnection,
    tenant: &str,
    today: NaiveDate,
) -> Result<u64, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE features SET due_date = $2
         WHERE tenant_id = $1 AND (due_date IS NULL OR due_date > $2)",
    )
    .bind(tenant)
    .bind(today)
    .execute(&mut *conn)
    .await?;
    Ok(updated.rows_affected())
}

/// Locks the stored rows of `customers` and returns their current evaluation (default for customers without one).
pub async fn lock_stored(
    conn: &mut PgConnection,
    tenant: &str,
    customers: &[i64],
) -> Result<std::collections::HashMap<i64, Stored>, sqlx::Error> {
    let rows: Vec<(i64, Vec<i16>, Option<NaiveDate>)> = sqlx::query_as(
        "SELECT customer_id, segments, due_date FROM features
         WHERE tenant_id = $1 AND customer_id = ANY($2) ORDER BY customer_id FOR UPDATE",
    )
    .bind(tenant)
    .bind(customers)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, segments, due)| (id, Stored { segments, due }))
        .collect())
}

/// Stores refreshed features with their evaluation. Every customer ingestion reported keeps a row, so rules such as
/// "opted in to email and never bought" see customers without orders too.
pub async fn store(
    conn: &mut PgConnection,
    tenant: &str,
    rows: &[(Features, Stored)],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&(Features, Stored)) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let ids = col(&|(f, _)| f.customer_id);
    let frequency = col(&|(f, _)| i64::from(f.frequency));
    let monetary = col(&|(f, _)| f.monetary);
    let first_day_spend = col(&|(f, _)| f.first_day_spend);
    let purchase_days = col(&|(f, _)| i64::from(f.purchase_days));
    let first_channel = col(&|(f, _)| i64::from(f.first_channel));
    let consent = col(&|(f, _)| i64::from(f.consent));
    let tenant_recent = col(&|(f, _)| f.share.tenant_recent);
    let all_recent = col(&|(f, _)| f.share.all_recent);
    let tenant_before = col(&|(f, _)| f.share.tenant_before);
    let all_before = col(&|(f, _)| f.share.all_before);
    let days = |f: &dyn Fn(&(Features, Stored)) -> Option<NaiveDate>| {
        rows.iter().map(f).collect::<Vec<Option<NaiveDate>>>()
    };
    let first_day = days(&|(f, _)| f.first_day);
    let last_day = days(&|(f, _)| f.last_day);
    let category_day = days(&|(f, _)| f.category_day);
    let share_due = days(&|(f, _)| f.share_due);
    let next_order_day = days(&|(f, _)| f.next_order_day);
    let last_engagement_day = days(&|(f, _)| f.last_engagement_day);
    let engagements = col(&|(f, _)| f.engagements);
    let birth_date = days(&|(f, _)| f.birth_date);
    let due = days(&|(_, s)| s.due);
    let gap: Vec<Option<f32>> = rows
        .iter()
        .map(|(f, _)| f.typical_gap.map(|g| g as f32))
        .collect();
    let first_category: Vec<Option<&str>> = rows
        .iter()
        .map(|(f, _)| f.first_category.as_deref())
        .collect();
    // Postgres has no arrays of arrays of different lengths, so the segment sets travel as text ("{1,15}").
    let segments: Vec<String> = rows
        .iter()
        .map(|(_, s)| segment_literal(&s.segments))
        .collect();
    sqlx::query(
        "INSERT INTO features (tenant_id, customer_id, frequency, monetary, first_day, last_day, purchase_days,
                               typical_gap, category_day, tenant_recent, all_recent, tenant_before, all_before,
                               share_due, segments, due_date, first_day_spend, first_channel, first_category,
                               birth_date, consent, next_order_day, last_engagement_day, engagements)
         SELECT $1, i.id, i.frequency, i.monetary, i.first_day, i.last_day, i.purchase_days, i.gap, i.category_day,
                i.tenant_recent, i.all_recent, i.tenant_before, i.all_before, i.share_due,
                i.segments::int2[], i.due, i.first_day_spend, i.first_channel, i.first_category, i.birth_date,
                i.consent, i.next_order_day, i.last_engagement_day, i.engagements
         FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::date[], $6::date[], $7::int8[], $8::real[],
                     $9::date[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::date[], $15::text[],
                     $16::date[], $17::int8[], $18::int2[], $19::text[], $20::date[], $21::int2[], $22::date[], $23::date[],
                     $24::int8[])
              AS i(id, frequency, monetary, first_day, last_day, purchase_days, gap, category_day, tenant_recent,
                   all_recent, tenant_before, all_before, share_due, segments, due, first_day_spend,
                   first_channel, first_category, birth_date, consent, next_order_day, last_engagement_day,
                   engagements)
         ON CONFLICT (tenant_id, customer_id) DO UPDATE SET
             frequency = EXCLUDED.frequency, monetary = EXCLUDED.monetary, first_day = EXCLUDED.first_day,
             last_day = EXCLUDED.last_day, purchase_days = EXCLUDED.purchase_days,
             typical_gap = EXCLUDED.typical_gap, category_day = EXCLUDED.category_day,
             tenant_recent = EXCLUDED.tenant_recent, all_recent = EXCLUDED.all_recent,
             tenant_before = EXCLUDED.tenant_before, all_before = EXCLUDED.all_before,
             share_due = EXCLUDED.share_due, segments = EXCLUDED.segments,
             due_date = EXCLUDED.due_date, first_day_spend = EXCLUDED.first_day_spend,
             first_channel = EXCLUDED.first_channel, first_category = EXCLUDED.first_category,
             birth_date = EXCLUDED.birth_date, consent = EXCLUDED.consent,
             next_order_day = EXCLUDED.next_order_day, last_engagement_day = EXCLUDED.last_engagement_day,
             engagements = EXCLUDED.engagements",
    )
    .bind(tenant)
    .bind(&ids)
    .bind(&frequency)
    .bind(&monetary)
    .bind(&first_day)
    .bind(&last_day)
    .bind(&purchase_days)
    .bind(&gap)
    .bind(&category_day)
    .bind(&tenant_recent)
    .bind(&all_recent)
    .bind(&tenant_before)
    .bind(&all_before)
    .bind(&share_due)
    .bind(&segments)
    .bind(&due)
    .bind(&first_day_spend)
    .bind(&first_channel)
    .bind(&first_category)
    .bind(&birth_date)
    .bind(&consent)
    .bind(&next_order_day)
    .bind(&last_engagement_day)
    .bind(&engagements)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stores new evaluations of customers whose features did not change (the full recompute). A due date that has
/// come stays: only the due sweep, computing the features again, moves it (a settings change makes everyone due
/// and then recomputes; the recompute, evaluating the features as stored, must not undo that).
pub async fn store_evaluations(
    conn: &mut PgConnection,
    tenant: &str,
    rows: &[(i64, Stored)],
    today: NaiveDate,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(100_000) {
        let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
        let segments: Vec<String> = chunk
            .iter()
            .map(|(_, s)| segment_literal(&s.segments))
            .collect();
        let due: Vec<Option<NaiveDate>> = chunk.iter().map(|(_, s)| s.due).collect();
        // `customer_id = ANY($2)` gives the planner an index path to just these rows; without it, it joins the
        // array against the whole table (measured on 1M customers: 0.7 s instead of 1.4 s for 14 000 updates).
        sqlx::query(
            "UPDATE features f SET segments = i.segments::int2[],
                 due_date = CASE WHEN f.due_date <= $5 THEN f.due_date ELSE i.due END
             FROM unnest($2::int8[], $3::text[], $4::date[]) AS i(id, segments, due)
             WHERE f.tenant_id = $1 AND f.customer_id = i.id AND f.customer_id = ANY($2)",
        )
        .bind(tenant)
        .bind(&ids)
        .bind(&segments)
        .bind(&due)
        .bind(today)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn segment_literal(segments: &[SegmentId]) -> String {
    let inner: Vec<String> = segments.iter().map(ToString::to_string).collect();
    format!("{{{}}}", inner.join(","))
}

/// Customers below which one COPY stream reads the whole tenant.
const PARALLEL_FROM: i64 = 100_000;

/// Logs that the transaction at membership `version` wrote (or deleted) the features rows of `customers`. Every
/// version gets its row, empty or not, so that a reader can tell a version that wrote nothing from one that was
/// not logged (written by a process that does not log, during a rolling update): it then reads the tenant whole.
pub async fn log(
    conn: &mut PgConnection,
    tenant: &str,
    version: i64,
    customers: &[i64],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO feature_log (tenant_id, version, customers) VALUES ($1, $2, $3)")
        .bind(tenant)
        .bind(version)
        .bind(customers)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Drops the log before `version` (a full recompute at `version` leaves a copy up to date with everything
/// before it); copies older than that read the whole tenant again.
pub async fn prune_log(
    conn: &mut PgConnection,
    tenant: &str,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM feature_log WHERE tenant_id = $1 AND version < $2")
        .bind(tenant)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE membership_versions SET log_pruned = $2 - 1 WHERE tenant_id = $1")
        .bind(tenant)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The tenant's membership version as `conn` sees it, and the last version the log was pruned to.
pub async fn log_state(conn: &mut PgConnection, tenant: &str) -> Result<(i64, i64), sqlx::Error> {
    let state: Option<(i64, i64)> =
        sqlx::query_as("SELECT version, log_pruned FROM membership_versions WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(state.unwrap_or((0, 0)))
}

/// Every stored customer of the tenant as `conn` sees it, at membership `version` (every earlier version
/// committed, no later one visible): `held`, a copy as of an earlier version, brought up to date by re-reading the
/// customers the feature log names since; or every customer, when there is no copy, the log since it was pruned
/// (`pruned`), or too much of it changed. Returns the population and the number of rows read.
pub async fn load_current(
    conn: &mut PgConnection,
    pool: &PgPool,
    tenant: &str,
    held: Option<Held>,
    (version, pruned): (i64, i64),
) -> Result<(Arc<Population>, usize), LoadError> {
    if let Some(Held {
        version: since,
        mut population,
    }) = held.filter(|h| h.version >= pruned && h.version <= version)
    {
        // Counted before they are listed: after a mass change the log names a million customers, and listing
        // them would cost more than reading the tenant. Past a quarter of the customers, one sequential read is
        // cheaper than looking that many up. A version without its row means a write the log does not know.
        let (versions, logged): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(cardinality(customers)), 0) FROM feature_log
             WHERE tenant_id = $1 AND version > $2 AND version <= $3",
        )
        .bind(tenant)
        .bind(since)
        .bind(version)
        .fetch_one(&mut *conn)
        .await?;
        if versions == version - since
            && population::small_change(logged as usize, population.len())
        {
            let changed: Vec<i64> = sqlx::query_scalar(
                "SELECT DISTINCT c FROM feature_log, unnest(customers) AS c
                 WHERE tenant_id = $1 AND version > $2 AND version <= $3",
            )
            .bind(tenant)
            .bind(since)
            .bind(version)
            .fetch_all(&mut *conn)
            .await?;
            let mut read = 0;
            if !changed.is_empty() {
                let list: Vec<String> = changed.iter().map(ToString::to_string).collect();
                // Integers only: the list is safe to inline (COPY takes no bind parameters).
                let filter = format!("AND customer_id = ANY('{{{}}}'::int8[])", list.join(","));
                let fresh = copy_out(conn, tenant, &filter, changed.len()).await?;
                read = fresh.len();
                population = tokio::task::spawn_blocking(move || {
                    Arc::make_mut(&mut population).replace(&changed, fresh);
                    population
                })
                .await
                .map_err(|err| LoadError::Parse(format!("catching up failed: {err}")))?;
            }
            return Ok((population, read));
        }
    }
    let population = load_all(conn, pool, tenant).await?;
    let read = population.len();
    Ok((Arc::new(population), read))
}

/// Every stored customer of a tenant with its features and evaluation, streamed with COPY (the full recompute,
/// previews, model fits), in `conn`'s transaction. A large tenant is read in ranges of customer ids at once, one per
/// core, each range on a connection of `pool` that imports the transaction's snapshot, so all of them see exactly
/// what `conn` sees: formatting and parsing a million rows is CPU work that one connection would do on one core.
pub async fn load_all(
    conn: &mut PgConnection,
    pool: &PgPool,
    tenant: &str,
) -> Result<Population, LoadError> {
    let (low, high): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT min(customer_id), max(customer_id) FROM features WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(&mut *conn)
    .await?;
    let parts = std::thread::available_parallelism().map_or(1, |n| n.get().min(4)) as i64;
    let (Some(low), Some(high)) = (low, high) else {
        return Ok(Population::default());
    };
    if parts == 1 || high - low < PARALLEL_FROM {
        return Ok(Population::from_parts(vec![
            copy_out(conn, tenant, "", (high - low + 1) as usize).await?,
        ]));
    }
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *conn)
        .await?;
    // Snapshot ids are hex digits and dashes; anything else would not be Postgres's.
    if !snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(LoadError::Parse(format!("snapshot id {snapshot:?}")));
    }
    // By ranges of ids (dense, so the ranges hold about as many customers each). Splitting by physical blocks
    // instead was no faster on a table whose rows had all been rewritten once: the live rows crowd its later pages.
    let step = (high - low) / parts + 1;
    let range = |k: i64| {
        if k == parts - 1 {
            format!("AND customer_id >= {}", low + k * step)
        } else {
            format!(
                "AND customer_id >= {} AND customer_id < {}",
                low + k * step,
                low + (k + 1) * step
            )
        }
    };
    let expected = step as usize;
    let others: Vec<_> = (1..parts)
        .map(|k| {
            let (pool, tenant, filter, snapshot) =
                (pool.clone(), tenant.to_owned(), range(k), snapshot.clone());
            tokio::spawn(async move {
                let mut tx = pool.begin().await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
                     SET TRANSACTION SNAPSHOT '{snapshot}'"
                )))
                .execute(&mut *tx)
                .await?;
                let rows = copy_out(&mut tx, &tenant, &filter, expected).await?;
                tx.commit().await?;
                Ok::<_, LoadError>(rows)
            })
        })
        .collect();
    // Ids are dense, so the range sizes are good guesses of the row counts: each vector is allocated once
    // (growing a million rows by doubling spent a fifth of the load zeroing fresh pages).
    let mut parts = vec![copy_out(conn, tenant, &range(0), expected).await?];
    for part in others {
        parts.push(
            part.await
                .map_err(|err| LoadError::Parse(format!("reading a range failed: {err}")))??,
        );
    }
    Ok(Population::from_parts(parts))
}

/// The stored rows of a tenant matching `filter` (a condition on the row, after `AND`; never caller input).
async fn copy_out(
    conn: &mut PgConnection,
    tenant: &str,
    filter: &str,
    expected: usize,
) -> Result<Vec<(Features, Stored)>, LoadError> {
    // The tenant id is validated ([a-z0-9-]) before it gets here; COPY takes no bind parameters.
    debug_assert!(
        tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    );
    // Binary: Postgres formats no numbers or dates (measured on a million rows: 1.3 s instead of 2.2 s), and
    // reading it back is a matter of byte offsets.
    let sql = format!(
        "COPY (SELECT customer_id, frequency, monetary, first_day, last_day, purchase_days, typical_gap,
                      category_day, tenant_recent, all_recent, tenant_before, all_before, share_due, segments,
                      due_date, first_day_spend, first_channel, first_category, birth_date, consent,
                      next_order_day, last_engagement_day, engagements
               FROM features WHERE tenant_id = '{tenant}' {filter}) TO STDOUT WITH (FORMAT binary)"
    );
    let mut stream = conn.copy_out_raw(&sql).await?;
    let mut rows = Vec::with_capacity(expected.min(10_000_000));
    let mut pending: Vec<u8> = Vec::new();
    let mut header = true;
    while let Some(chunk) = stream.try_next().await? {
        pending.extend_from_slice(&chunk);
        let mut reader = Reader {
            bytes: &pending,
            at: 0,
        };
        if header {
            match reader.header() {
                Some(()) => header = false,
                None if pending.len() < 1024 => continue,
                None => return Err(LoadError::Parse("not a binary COPY stream".into())),
            }
        }
        // Whole tuples only; a tuple cut by the chunk's end waits for the next chunk.
        loop {
            let start = reader.at;
            match reader.tuple() {
                Tuple::Row(row) => rows.push(row),
                Tuple::End => break,
                Tuple::Incomplete => {
                    reader.at = start;
                    break;
                }
                Tuple::Malformed => {
                    return Err(LoadError::Parse(format!("features row at byte {start}")));
                }
            }
        }
        let consumed = reader.at;
        pending.drain(..consumed);
    }
    Ok(rows)
}

/// A position in the bytes of a binary COPY stream.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

enum Tuple {
    Row((Features, Stored)),
    /// The trailer: no more tuples.
    End,
    /// More bytes are needed.
    Incomplete,
    Malformed,
}

/// Days from 1970-01-01 to 2000-01-01, Postgres's date epoch.
const PG_EPOCH_DAYS: i32 = 10_957;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.at..self.at + n)?;
        self.at += n;
        Some(slice)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// The signature, flags and header extension.
    fn header(&mut self) -> Option<()> {
        (self.take(11)? == b"PGCOPY\n\xff\r\n\0").then_some(())?;
        self.take(4)?;
        let extension = usize::try_from(self.i32()?).ok()?;
        self.take(extension)?;
        Some(())
    }

    /// One field's bytes; `Some(None)` for NULL, `None` when the stream is cut short.
    fn field(&mut self) -> Option<Option<&'a [u8]>> {
        match self.i32()? {
            -1 => Some(None),
            n => Some(Some(self.take(usize::try_from(n).ok()?)?)),
        }
    }

    fn tuple(&mut self) -> Tuple {
        let Some(fields) = self.i16() else {
            return Tuple::Incomplete;
        };
        if fields == -1 {
            return Tuple::End;
        }
        let mut values: [Option<&[u8]>; COLUMNS] = [None; COLUMNS];
        if fields as usize != values.len() {
            return Tuple::Malformed;
        }
        for value in &mut values {
            match self.field() {
                Some(v) => *value = v,
                None => return Tuple::Incomplete,
            }
        }
        decode(&values).map_or(Tuple::Malformed, Tuple::Row)
    }
}

fn int(bytes: Option<&[u8]>) -> Option<i64> {
    let bytes = bytes?;
    Some(match bytes.len() {
        2 => i16::from_be_bytes(bytes.try_into().ok()?).into(),
        4 => i32::from_be_bytes(bytes.try_into().ok()?).into(),
        8 => i64::from_be_bytes(bytes.try_into().ok()?),
        _ => return None,
    })
}

/// A nullable date column: `Some(None)` for NULL, `None` when malformed.
fn date(bytes: Option<&[u8]>) -> Option<Option<NaiveDate>> {
    match bytes {
        None => Some(None),
        Some(bytes) => {
            let days = i32::from_be_bytes(bytes.try_into().ok()?);
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
            Some(Some(epoch.checked_add_signed(chrono::Duration::days(
                i64::from(days) + i64::from(PG_EPOCH_DAYS),
            ))?))
        }
    }
}

/// An `int2[]` in Postgres's binary array format (one dimension, or none when empty).
fn int2_array(bytes: &[u8]) -> Option<Vec<SegmentId>> {
    let mut reader = Reader { bytes, at: 0 };
    let dimensions = reader.i32()?;
    reader.take(8)?; // null flag, element type
    if dimensions == 0 {
        return Some(Vec::new());
    }
    let length = usize::try_from(reader.i32()?).ok()?;
    reader.take(4)?; // lower bound
    (0..length)
        .map(|_| {
            let element = reader.field()??;
            Some(i16::from_be_bytes(element.try_into().ok()?))
        })
        .collect()
}

/// The columns of a copied features row, in the order `copy_out` selects them.
const COLUMNS: usize = 23;

fn decode(v: &[Option<&[u8]>; COLUMNS]) -> Option<(Features, Stored)> {
    Some((
        Features {
            customer_id: int(v[0])?,
            frequency: u32::try_from(int(v[1])?).ok()?,
            monetary: int(v[2])?,
            first_day: date(v[3])?,
            last_day: date(v[4])?,
            purchase_days: u32::try_from(int(v[5])?).ok()?,
            typical_gap: match v[6] {
                None => None,
                Some(bytes) => Some(f64::from(f32::from_be_bytes(bytes.try_into().ok()?))),
            },
            category_day: date(v[7])?,
            share: ShareOfWallet {
                tenant_recent: int(v[8])?,
                all_recent: int(v[9])?,
                tenant_before: int(v[10])?,
                all_before: int(v[11])?,
            },
            share_due: date(v[12])?,
            first_day_spend: int(v[15])?,
            first_channel: i16::try_from(int(v[16])?).ok()?,
            first_category: match v[17] {
                None => None,
                Some(bytes) => Some(std::str::from_utf8(bytes).ok()?.to_owned()),
            },
            birth_date: date(v[18])?,
            consent: u8::try_from(int(v[19])?).ok()?,
            next_order_day: date(v[20])?,
            last_engagement_day: date(v[21])?,
            engagements: int(v[22])?,
        },
        Stored {
            segments: int2_array(v[13]?)?,
            due: date(v[14])?,
        },
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unexpected features row: {0}")]
    Parse(String),
}

/// A customer's stored features and evaluation, for explanations.
pub async fn explain(
    conn: &mut PgConnection,
    tenant: &str,
    customer: i64,
) -> Result<Option<(Features, Stored)>, LoadError> {
    Ok(
        copy_out(conn, tenant, &format!("AND customer_id = {customer}"), 1)
            .await?
            .pop(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use boomerang_testkit::TestDb;

    async fn pool(db: &TestDb) -> PgPool {
        let pool = db.pool(crate::SCHEMA);
        crate::migrate(&pool).await.unwrap();
        pool
    }

    /// The copy as of the tenant's current version, and how many rows it took.
    async fn current(pool: &PgPool, held: Option<Held>) -> (Arc<Population>, usize) {
        let mut tx = pool.begin().await.unwrap();
        let state = log_state(&mut tx, "t").await.unwrap();
        let loaded = load_current(&mut tx, pool, "t", held, state).await.unwrap();
        tx.commit().await.unwrap();
        loaded
    }

    fn frequencies(population: &Population) -> Vec<(i64, u32)> {
        let mut rows: Vec<_> = population
            .iter()
            .map(|(f, _)| (f.customer_id, f.frequency))
            .collect();
        rows.sort_unstable();
        rows
    }

    #[tokio::test]
    async fn a_copy_catches_up_on_logged_writes_and_reads_everything_after_an_unlogged_one() {
        let db = TestDb::new().await;
        let pool = pool(&db).await;
        sqlx::raw_sql(
            "INSERT INTO features (tenant_id, customer_id, frequency, monetary, purchase_days)
             SELECT 't', id, 1, 100, 1 FROM generate_series(1, 3) id;
             INSERT INTO membership_versions (tenant_id, version) VALUES ('t', 1);
             INSERT INTO feature_log VALUES ('t', 1, '{1,2,3}');",
        )
        .execute(&pool)
        .await
        .unwrap();
        let (copy, read) = current(&pool, None).await;
        assert_eq!(read, 3, "no copy yet: every customer");

        // Version 2 changes customer 2 and adds customer 4, and logs both.
        sqlx::raw_sql(
            "UPDATE features SET frequency = 2 WHERE customer_id = 2;
             INSERT INTO features (tenant_id, customer_id, frequency, monetary, purchase_days)
             VALUES ('t', 4, 1, 100, 1);
             UPDATE membership_versions SET version = 2;
             INSERT INTO feature_log VALUES ('t', 2, '{2,4}');",
        )
        .execute(&pool)
        .await
        .unwrap();
        let held = Held {
            version: 1,
            population: copy,
        };
        let (copy, read) = current(&pool, Some(held)).await;
        assert_eq!(read, 2, "only the logged customers");
        assert_eq!(frequencies(&copy), [(1, 1), (2, 2), (3, 1), (4, 1)]);

        // Version 3 changes customer 3 without a log row (a process that does not log): the copy cannot know
        // which rows moved, so the tenant is read whole.
        sqlx::raw_sql(
            "UPDATE features SET frequency = 5 WHERE customer_id = 3;
             UPDATE membership_versions SET version = 3;",
        )
        .execute(&pool)
        .await
        .unwrap();
        let held = Held {
            version: 2,
            population: copy,
        };
        let (copy, read) = current(&pool, Some(held)).await;
        assert_eq!(read, 4, "every customer again");
        assert_eq!(frequencies(&copy), [(1, 1), (2, 2), (3, 5), (4, 1)]);
    }

    #[tokio::test]
    async fn a_large_tenant_is_read_in_ranges_that_add_up_to_every_customer() {
        let db = TestDb::new().await;
        let pool = pool(&db).await;
        // Ids far enough apart for the parallel read, a category that needs unescaping, and a neighbour tenant.
        sqlx::raw_sql(
            "INSERT INTO features (tenant_id, customer_id, frequency, monetary, purchase_days, first_category,
                                   segments, first_day, typical_gap, consent)
             SELECT 'big', id, id % 7, id, 1, E'tab\\there', '{1,15}', DATE '1999-12-31' + id::int, 2.5, 5
             FROM unnest('{1,2,150000,299999,300000}'::int8[]) id;
             INSERT INTO features (tenant_id, customer_id, frequency, monetary, purchase_days)
             VALUES ('other', 150001, 1, 1, 1);",
        )
        .execute(&pool)
        .await
        .unwrap();
        let mut tx = pool.begin().await.unwrap();
        let population = load_all(&mut tx, &pool, "big").await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(population.len(), 5);
        let covered: usize = population.slices(3).iter().map(|s| s.len()).sum();
        assert_eq!(covered, 5, "the slices cover everyone once");
        let mut rows: Vec<_> = population.iter().cloned().collect();
        rows.sort_by_key(|(f, _)| f.customer_id);
        let ids: Vec<i64> = rows.iter().map(|(f, _)| f.customer_id).collect();
        assert_eq!(ids, [1, 2, 150_000, 299_999, 300_000]);
        let (features, stored) = &rows[2];
        assert_eq!(features.frequency, 150_000 % 7);
        assert_eq!(features.monetary, 150_000);
        assert_eq!(features.first_category.as_deref(), Some("tab\there"));
        assert_eq!(stored.segments, [1, 15]);
        assert_eq!(
            features.first_day,
            Some(NaiveDate::from_ymd_opt(1999, 12, 31).unwrap() + chrono::Days::new(150_000))
        );
        assert_eq!(features.last_day, None);
        assert_eq!((features.typical_gap, features.consent), (Some(2.5), 5));
        assert_eq!(rows[0].0.first_day, NaiveDate::from_ymd_opt(2000, 1, 1));
    }

    /// A date the features name is the day they change: an order placed ahead of today counts from its own day, and
    /// a transaction of 31 August leaves a six-month window on the 28 February its due date names.
    #[tokio::test]
    async fn the_day_a_date_names_is_the_day_the_features_change() {
        let db = TestDb::new().await;
        let pool = pool(&db).await;
        sqlx::raw_sql(
            "INSERT INTO orders (tenant_id, order_id, customer_id, place_time, eligible, amount_minor, channel)
             VALUES ('t', 'a', 1, '2026-08-20 10:00Z', true, 1000, 1),
                    ('t', 'b', 1, '2026-09-02 23:30Z', true, 500, 2);
             INSERT INTO transactions (tenant_id, transaction_id, customer_id, merchant_id, category,
                                       amount_minor, occur_time)
             VALUES ('t', 'x', 1, 'me', 'fuel', 100, '2026-08-31 12:00Z'),
                    ('t', 'y', 1, 'other', 'fuel', 300, '2026-09-01 12:00Z');",
        )
        .execute(&pool)
        .await
        .unwrap();
        let settings = Settings {
            merchant_category: "fuel".into(),
            own_merchant_ids: vec!["me".into()],
            share_window_months: 6,
            ..Settings::default()
        };
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let on = |today: &'static str| {
            let (pool, settings) = (pool.clone(), settings.clone());
            async move {
                let mut conn = pool.acquire().await.unwrap();
                let mut rows = compute(&mut conn, "t", &[1], day(today), &settings)
                    .await
                    .unwrap();
                rows.pop().unwrap()
            }
        };
        let share = |f: &Features| {
            let s = f.share;
            (s.tenant_recent, s.all_recent, s.tenant_before, s.all_before)
        };

        let before = on("2026-09-01").await;
        assert_eq!(before.frequency, 1, "tomorrow's order does not count yet");
        assert_eq!(before.next_order_day, Some(day("2026-09-02")));
        assert_eq!(share(&before), (100, 400, 0, 0));
        assert_eq!(before.share_due, Some(day("2027-02-28")));
        let next = on("2026-09-02").await;
        assert_eq!(
            (next.frequency, next.monetary),
            (2, 1500),
            "it counts on its day"
        );
        assert_eq!(next.next_order_day, None);

        assert_eq!(share(&on("2027-02-27").await), (100, 400, 0, 0));
        let moved = on("2027-02-28").await;
        assert_eq!(
            share(&moved),
            (0, 300, 100, 100),
            "31 August's spend has left the recent window on the day named"
        );
        assert_eq!(moved.share_due, Some(day("2027-03-01")));
    }
}
