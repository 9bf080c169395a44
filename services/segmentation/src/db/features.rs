//! Customer features: refreshed set-based from the projected orders and transactions of the customers that changed,
//! and read in bulk (COPY) by the full recompute.

use chrono::NaiveDate;
use futures::TryStreamExt;
use sqlx::PgConnection;

use crate::domain::evaluate::{Evaluation, Features};
use crate::domain::lifecycle::ShareOfWallet;
use crate::domain::rupture;
use crate::domain::segments::SegmentId;
use crate::domain::settings::Settings;

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
}

/// Computes the features of `customers` on `today` from their orders, transactions, birth date and consents.
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
         eo AS (
             SELECT ids.customer_id, d.day, o.amount_minor, o.channel, o.category, o.place_time, o.order_id,
                    min(d.day) OVER (PARTITION BY ids.customer_id) AS first_day
             FROM ids
                  CROSS JOIN LATERAL (SELECT * FROM orders o
                                      WHERE o.tenant_id = $1 AND o.customer_id = ids.customer_id AND o.eligible
                                      OFFSET 0) o
                  CROSS JOIN LATERAL (SELECT (o.place_time AT TIME ZONE 'UTC')::date AS day) d
             WHERE d.day > ($3::date - make_interval(years => $4))::date AND d.day <= $3::date),
         o AS (
             SELECT customer_id, count(*)::int4 AS frequency, sum(amount_minor)::int8 AS monetary,
                    min(day) AS first_day, max(day) AS last_day, array_agg(DISTINCT day) AS days,
                    sum(amount_minor) FILTER (WHERE day = first_day)::int8 AS first_day_spend,
                    (array_agg(channel ORDER BY place_time, order_id))[1] AS first_channel,
                    (array_agg(category ORDER BY place_time, order_id))[1] AS first_category
             FROM eo GROUP BY customer_id),
         t AS (
             SELECT t.customer_id,
                    max(d.day) FILTER (WHERE d.day > ($3::date - make_interval(months => $7))::date) AS category_day,
                    coalesce(sum(t.amount_minor) FILTER (WHERE d.recent AND t.merchant_id = ANY($6)), 0)::int8 AS tenant_recent,
                    coalesce(sum(t.amount_minor) FILTER (WHERE d.recent), 0)::int8 AS all_recent,
                    coalesce(sum(t.amount_minor) FILTER (WHERE d.before AND t.merchant_id = ANY($6)), 0)::int8 AS tenant_before,
                    coalesce(sum(t.amount_minor) FILTER (WHERE d.before), 0)::int8 AS all_before,
                    least(min((d.day + make_interval(months => $8))::date)
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
                             day0.day > ($3::date - make_interval(months => $8))::date AND day0.day <= $3::date
                                 AS recent,
                             day0.day > ($3::date - make_interval(months => 2 * $8))::date
                                 AND day0.day <= ($3::date - make_interval(months => $8))::date AS before) d
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
                t.share_due
         FROM ids LEFT JOIN o USING (customer_id) LEFT JOIN t USING (customer_id) LEFT JOIN k USING (customer_id)
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
                typical_gap: rupture::typical_gap(&days),
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
            }
        })
        .collect())
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
                               birth_date, consent)
         SELECT $1, i.id, i.frequency, i.monetary, i.first_day, i.last_day, i.purchase_days, i.gap, i.category_day,
                i.tenant_recent, i.all_recent, i.tenant_before, i.all_before, i.share_due,
                i.segments::int2[], i.due, i.first_day_spend, i.first_channel, i.first_category, i.birth_date,
                i.consent
         FROM unnest($2::int8[], $3::int8[], $4::int8[], $5::date[], $6::date[], $7::int8[], $8::real[],
                     $9::date[], $10::int8[], $11::int8[], $12::int8[], $13::int8[], $14::date[], $15::text[],
                     $16::date[], $17::int8[], $18::int2[], $19::text[], $20::date[], $21::int2[])
              AS i(id, frequency, monetary, first_day, last_day, purchase_days, gap, category_day, tenant_recent,
                   all_recent, tenant_before, all_before, share_due, segments, due, first_day_spend,
                   first_channel, first_category, birth_date, consent)
         ON CONFLICT (tenant_id, customer_id) DO UPDATE SET
             frequency = EXCLUDED.frequency, monetary = EXCLUDED.monetary, first_day = EXCLUDED.first_day,
             last_day = EXCLUDED.last_day, purchase_days = EXCLUDED.purchase_days,
             typical_gap = EXCLUDED.typical_gap, category_day = EXCLUDED.category_day,
             tenant_recent = EXCLUDED.tenant_recent, all_recent = EXCLUDED.all_recent,
             tenant_before = EXCLUDED.tenant_before, all_before = EXCLUDED.all_before,
             share_due = EXCLUDED.share_due, segments = EXCLUDED.segments,
             due_date = EXCLUDED.due_date, first_day_spend = EXCLUDED.first_day_spend,
             first_channel = EXCLUDED.first_channel, first_category = EXCLUDED.first_category,
             birth_date = EXCLUDED.birth_date, consent = EXCLUDED.consent",
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
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stores new evaluations of customers whose features did not change (the full recompute).
pub async fn store_evaluations(
    conn: &mut PgConnection,
    tenant: &str,
    rows: &[(i64, Stored)],
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(100_000) {
        let ids: Vec<i64> = chunk.iter().map(|(id, _)| *id).collect();
        let segments: Vec<String> = chunk
            .iter()
            .map(|(_, s)| segment_literal(&s.segments))
            .collect();
        let due: Vec<Option<NaiveDate>> = chunk.iter().map(|(_, s)| s.due).collect();
        sqlx::query(
            "UPDATE features f SET segments = i.segments::int2[], due_date = i.due
             FROM unnest($2::int8[], $3::text[], $4::date[]) AS i(id, segments, due)
             WHERE f.tenant_id = $1 AND f.customer_id = i.id",
        )
        .bind(tenant)
        .bind(&ids)
        .bind(&segments)
        .bind(&due)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn segment_literal(segments: &[SegmentId]) -> String {
    let inner: Vec<String> = segments.iter().map(ToString::to_string).collect();
    format!("{{{}}}", inner.join(","))
}

/// Every stored customer of a tenant with its features and evaluation, streamed with COPY (the full recompute).
pub async fn load_all(
    conn: &mut PgConnection,
    tenant: &str,
) -> Result<Vec<(Features, Stored)>, LoadError> {
    copy_out(conn, tenant, "").await
}

/// The stored rows of a tenant matching `filter` (a condition on the row, after `AND`; never caller input).
async fn copy_out(
    conn: &mut PgConnection,
    tenant: &str,
    filter: &str,
) -> Result<Vec<(Features, Stored)>, LoadError> {
    // The tenant id is validated ([a-z0-9-]) before it gets here; COPY takes no bind parameters.
    debug_assert!(
        tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    );
    let sql = format!(
        "COPY (SELECT customer_id, frequency, monetary, first_day, last_day, purchase_days, typical_gap,
                      category_day, tenant_recent, all_recent, tenant_before, all_before, share_due, segments,
                      due_date, first_day_spend, first_channel, first_category, birth_date, consent
               FROM features WHERE tenant_id = '{tenant}' {filter}) TO STDOUT"
    );
    let mut stream = conn.copy_out_raw(&sql).await?;
    let mut rows = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.try_next().await? {
        pending.extend_from_slice(&chunk);
        let complete = match pending.iter().rposition(|b| *b == b'\n') {
            Some(end) => end + 1,
            None => continue,
        };
        for line in pending[..complete]
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
        {
            rows.push(
                parse_line(line)
                    .ok_or_else(|| LoadError::Parse(String::from_utf8_lossy(line).into()))?,
            );
        }
        pending.drain(..complete);
    }
    Ok(rows)
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unexpected features row: {0}")]
    Parse(String),
}

fn parse_line(line: &[u8]) -> Option<(Features, Stored)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut fields = text.split('\t');
    let mut next = || fields.next();
    let int = |s: Option<&str>| s?.parse::<i64>().ok();
    let day = |s: Option<&str>| -> Option<Option<NaiveDate>> {
        match s? {
            "\\N" => Some(None),
            value => value.parse().ok().map(Some),
        }
    };
    let customer_id = int(next())?;
    let frequency = int(next())? as u32;
    let monetary = int(next())?;
    let first_day = day(next())?;
    let last_day = day(next())?;
    let purchase_days = int(next())? as u32;
    let typical_gap = match next()? {
        "\\N" => None,
        value => Some(value.parse::<f64>().ok()?),
    };
    let category_day = day(next())?;
    let share = ShareOfWallet {
        tenant_recent: int(next())?,
        all_recent: int(next())?,
        tenant_before: int(next())?,
        all_before: int(next())?,
    };
    let share_due = day(next())?;
    let segments_text = next()?;
    let segments = segments_text
        .trim_start_matches('{')
        .trim_end_matches('}')
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i16>().ok())
        .collect::<Option<Vec<_>>>()?;
    let due = day(next())?;
    let first_day_spend = int(next())?;
    let first_channel = int(next())? as i16;
    let first_category = match next()? {
        "\\N" => None,
        value => Some(unescape(value)),
    };
    let birth_date = day(next())?;
    let consent = int(next())? as u8;
    Some((
        Features {
            customer_id,
            frequency,
            monetary,
            first_day_spend,
            first_day,
            last_day,
            purchase_days,
            typical_gap,
            first_channel,
            first_category,
            birth_date,
            consent,
            category_day,
            share,
            share_due,
        },
        Stored { segments, due },
    ))
}

/// A text field of COPY's text format: backslash escapes the delimiter, newlines and itself.
fn unescape(value: &str) -> String {
    if !value.contains('\\') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('v') => out.push('\u{b}'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// A customer's stored features and evaluation, for explanations.
pub async fn explain(
    conn: &mut PgConnection,
    tenant: &str,
    customer: i64,
) -> Result<Option<(Features, Stored)>, LoadError> {
    Ok(
        copy_out(conn, tenant, &format!("AND customer_id = {customer}"))
            .await?
            .pop(),
    )
}
