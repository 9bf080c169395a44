//! Customers: writing identity resolution plans, and reading customers back.

use std::collections::{HashMap, HashSet};

use boomerang_auth::TenantId;
use boomerang_events::{NewEvent, Outbox};
use boomerang_proto::ingestion as pb;
use boomerang_service_kit::time::to_timestamp;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};

use super::{customer_name, lock_identity, refs};
use crate::domain::batch::{Fate, Mode, refusals};
use crate::domain::customer::{CustomerRecord, Profile};
use crate::domain::identifier::{Identifier, Kind};
use crate::domain::identity::{self, Conflict, CustomerRef, KnownCustomer, Plan};
use crate::error::IngestionError;

/// The fate of one record, with the conflicts it raised.
pub type RecordResult = (usize, Fate, Vec<pb::IdentityConflict>);

/// Upserts validated records (with their request indexes) in one transaction.
pub async fn upsert(
    pool: &PgPool,
    outbox: &Outbox,
    tenant: &TenantId,
    records: Vec<(usize, CustomerRecord)>,
    mode: Mode,
) -> Result<Vec<RecordResult>, IngestionError> {
    let mut tx = pool.begin().await?;
    lock_identity(&mut tx, tenant, true).await?;

    // Records naming an erased person are refused before they can resurrect anyone.
    let all: Vec<&Identifier> = {
        let mut all: Vec<&Identifier> = records.iter().flat_map(|(_, r)| &r.identifiers).collect();
        all.sort();
        all.dedup();
        all
    };
    let suppressed = refs::suppressed(&mut tx, tenant, &all).await?;
    let mut results = Vec::with_capacity(records.len());
    let mut accepted = Vec::with_capacity(records.len());
    for (index, record) in records {
        match record
            .identifiers
            .iter()
            .find(|id| suppressed.contains(*id))
        {
            Some(identifier) => results.push((
                index,
                Fate::Refused {
                    field: "identifiers".into(),
                    reason: refs::suppressed_reason(identifier),
                },
                Vec::new(),
            )),
            None => accepted.push((index, record)),
        }
    }
    if mode == Mode::Atomic && !results.is_empty() {
        let refused: Vec<(usize, Fate)> = results
            .into_iter()
            .map(|(index, fate, _)| (index, fate))
            .collect();
        return Err(IngestionError::Refused(refusals(&refused, "customers")));
    }

    let records: Vec<CustomerRecord> = accepted.iter().map(|(_, r)| r.clone()).collect();
    let identifiers: Vec<&Identifier> = records.iter().flat_map(|r| &r.identifiers).collect();
    let known = load_known(&mut tx, tenant, &identifiers).await?;
    let plan = identity::resolve(known, &records);
    let written = write_plan(&mut tx, outbox, tenant, &plan).await?;
    tx.commit().await?;

    for ((index, _), outcome) in accepted.iter().zip(&plan.outcomes) {
        let id = written.id(outcome.customer);
        let conflicts: Vec<pb::IdentityConflict> = outcome
            .conflicts
            .iter()
            .map(|conflict| written.conflict(tenant, conflict))
            .collect();
        let new_conflict = outcome.conflicts.iter().any(|conflict| {
            written
                .new_conflicts
                .contains(&conflict_key(&written, conflict))
        });
        let resource = customer_name(tenant, id);
        let fate = if outcome.changed || new_conflict {
            Fate::Accepted { resource }
        } else {
            Fate::Duplicate { resource }
        };
        results.push((*index, fate, conflicts));
    }
    Ok(results)
}

/// The customers owning any of `identifiers`, with all their identifiers and profiles.
async fn load_known(
    conn: &mut PgConnection,
    tenant: &TenantId,
    identifiers: &[&Identifier],
) -> Result<Vec<KnownCustomer>, sqlx::Error> {
    let (kinds, values) = refs::columns(identifiers);
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT i.customer_id
         FROM unnest($2::smallint[], $3::text[]) AS r(kind, value)
         JOIN identifiers i ON i.tenant_id = $1 AND i.kind = r.kind AND i.value = r.value",
    )
    .bind(tenant.as_str())
    .bind(&kinds)
    .bind(&values)
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let profiles: Vec<ProfileRow> = sqlx::query_as(
        "SELECT id, given_name, family_name, birth_date, postcode, country
         FROM customers WHERE tenant_id = $1 AND id = ANY($2)",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let held: Vec<(i64, i16, String)> = sqlx::query_as(
        "SELECT customer_id, kind, value FROM identifiers WHERE tenant_id = $1 AND customer_id = ANY($2)",
    )
    .bind(tenant.as_str())
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_customer: HashMap<i64, Vec<Identifier>> = HashMap::new();
    for (customer, kind, value) in held {
        if let Some(kind) = Kind::from_code(kind) {
            by_customer
                .entry(customer)
                .or_default()
                .push(Identifier::from_stored(kind, value));
        }
    }
    Ok(profiles
        .into_iter()
        .map(|row| KnownCustomer {
            id: row.id,
            identifiers: by_customer.remove(&row.id).unwrap_or_default(),
            profile: row.profile(),
        })
        .collect())
}

#[derive(sqlx::FromRow)]
struct ProfileRow {
    id: i64,
    given_name: Option<String>,
    family_name: Option<String>,
    birth_date: Option<NaiveDate>,
    postcode: Option<String>,
    country: Option<String>,
}

impl ProfileRow {
    fn profile(&self) -> Profile {
        Profile {
            given_name: self.given_name.clone(),
            family_name: self.family_name.clone(),
            birth_date: self.birth_date,
            postcode: self.postcode.clone(),
            country: self.country.clone(),
        }
    }
}

/// What writing a plan produced: real ids for new customers, and the stored conflicts.
struct Written {
    new_ids: Vec<i64>,
    /// (customer, kind, value) → (conflict id, first detection time).
    conflicts: HashMap<(i64, i16, String), (i64, DateTime<Utc>)>,
    new_conflicts: HashSet<(i64, i16, String)>,
}

impl Written {
    fn id(&self, customer: CustomerRef) -> i64 {
        match customer {
            CustomerRef::Existing(id) => id,
            CustomerRef::New(n) => self.new_ids[n],
        }
    }

    fn conflict(&self, tenant: &TenantId, conflict: &Conflict) -> pb::IdentityConflict {
        let key = conflict_key(self, conflict);
        let (id, detect_time) = self.conflicts.get(&key).copied().unwrap_or((0, Utc::now()));
        pb::IdentityConflict {
            name: format!("tenants/{tenant}/identityConflicts/{id}"),
            customer: customer_name(tenant, key.0),
            other_customer: conflict
                .other
                .map(|other| customer_name(tenant, self.id(other)))
                .unwrap_or_default(),
            identifier: Some(conflict.identifier.to_proto()),
            existing: Some(conflict.existing.to_proto()),
            reason: conflict.reason.clone(),
            detect_time: Some(to_timestamp(detect_time)),
        }
    }
}

fn conflict_key(written: &Written, conflict: &Conflict) -> (i64, i16, String) {
    (
        written.id(conflict.customer),
        conflict.identifier.kind().code(),
        conflict.identifier.value().to_owned(),
    )
}

/// Writes a plan with a handful of set-based statements, and publishes its events.
async fn write_plan(
    conn: &mut PgConnection,
    outbox: &Outbox,
    tenant: &TenantId,
    plan: &Plan,
) -> Result<Written, sqlx::Error> {
    let new_count = plan
        .touched
        .iter()
        .filter(|t| matches!(t.customer, CustomerRef::New(_)))
        .count();
    let new_ids: Vec<i64> =
        sqlx::query_scalar("SELECT nextval('customer_id_seq') FROM generate_series(1, $1)")
            .bind(new_count as i64)
            .fetch_all(&mut *conn)
            .await?;
    let mut written = Written {
        new_ids,
        conflicts: HashMap::new(),
        new_conflicts: HashSet::new(),
    };

    // Profiles: insert new customers, rewrite changed ones.
    let mut profile_rows = ProfileColumns::default();
    let mut created = Vec::new();
    for touched in &plan.touched {
        if touched.created || touched.profile_changed {
            let id = written.id(touched.customer);
            profile_rows.push(id, &touched.profile);
            created.push(touched.created);
        }
    }
    if !profile_rows.ids.is_empty() {
        sqlx::query(
            "INSERT INTO customers (tenant_id, id, given_name, family_name, birth_date, postcode, country)
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[], $5::date[], $6::text[], $7::text[])
             ON CONFLICT (tenant_id, id) DO UPDATE SET
                 given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name,
                 birth_date = EXCLUDED.birth_date, postcode = EXCLUDED.postcode, country = EXCLUDED.country,
                 update_time = now()",
        )
        .bind(tenant.as_str())
        .bind(&profile_rows.ids)
        .bind(&profile_rows.given_names)
        .bind(&profile_rows.family_names)
        .bind(&profile_rows.birth_dates)
        .bind(&profile_rows.postcodes)
        .bind(&profile_rows.countries)
        .execute(&mut *conn)
        .await?;
    }

    if !plan.merged_into.is_empty() {
        // Identifiers change owner: caches of owners read before this commit must not be trusted after it.
        super::bump_identity_epoch(conn, tenant).await?;
        let merged: Vec<i64> = plan.merged_into.iter().map(|(m, _)| *m).collect();
        let survivors: Vec<i64> = plan
            .merged_into
            .iter()
            .map(|(_, s)| written.id(*s))
            .collect();
        rekey_merged(conn, tenant, &merged, &survivors).await?;
        let steps = &plan.merges;
        let step_survivors: Vec<i64> = steps.iter().map(|m| written.id(m.survivor)).collect();
        let step_merged: Vec<i64> = steps.iter().map(|m| m.merged).collect();
        let via_kinds: Vec<i16> = steps.iter().map(|m| m.via.kind().code()).collect();
        let via_values: Vec<&str> = steps.iter().map(|m| m.via.value()).collect();
        let reasons: Vec<&str> = steps.iter().map(|m| m.reason.as_str()).collect();
        sqlx::query(
            "INSERT INTO merges (tenant_id, survivor_id, merged_id, via_kind, via_value, reason)
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::smallint[], $5::text[], $6::text[])",
        )
        .bind(tenant.as_str())
        .bind(&step_survivors)
        .bind(&step_merged)
        .bind(&via_kinds)
        .bind(&via_values)
        .bind(&reasons)
        .execute(&mut *conn)
        .await?;
    }

    if !plan.attach.is_empty() {
        let kinds: Vec<i16> = plan.attach.iter().map(|(id, _)| id.kind().code()).collect();
        let values: Vec<&str> = plan.attach.iter().map(|(id, _)| id.value()).collect();
        let owners: Vec<i64> = plan
            .attach
            .iter()
            .map(|(_, owner)| written.id(*owner))
            .collect();
        sqlx::query(
            "INSERT INTO identifiers (tenant_id, kind, value, customer_id)
             SELECT $1, * FROM unnest($2::smallint[], $3::text[], $4::bigint[])",
        )
        .bind(tenant.as_str())
        .bind(&kinds)
        .bind(&values)
        .bind(&owners)
        .execute(&mut *conn)
        .await?;
    }

    if !plan.conflicts.is_empty() {
        // One row per (customer, identifier), so a batch repeating a conflict writes it once.
        let mut seen = HashSet::new();
        let mut rows = ConflictColumns::default();
        for conflict in &plan.conflicts {
            let key = conflict_key(&written, conflict);
            if seen.insert(key.clone()) {
                rows.customers.push(key.0);
                rows.others.push(conflict.other.map(|o| written.id(o)));
                rows.kinds.push(key.1);
                rows.values.push(key.2);
                rows.existing.push(conflict.existing.value().to_owned());
                rows.reasons.push(conflict.reason.clone());
            }
        }
        let stored: Vec<(i64, i64, i16, String, DateTime<Utc>, bool)> = sqlx::query_as(
            "INSERT INTO identity_conflicts
                 (tenant_id, customer_id, other_customer_id, kind, value, existing_value, reason)
             SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::smallint[], $5::text[], $6::text[], $7::text[])
             ON CONFLICT (tenant_id, customer_id, kind, value) DO UPDATE SET
                 last_seen = now(), other_customer_id = EXCLUDED.other_customer_id,
                 existing_value = EXCLUDED.existing_value, reason = EXCLUDED.reason
             RETURNING id, customer_id, kind, value, detect_time, (xmax = 0) AS inserted",
        )
        .bind(tenant.as_str())
        .bind(&rows.customers)
        .bind(&rows.others)
        .bind(&rows.kinds)
        .bind(&rows.values)
        .bind(&rows.existing)
        .bind(&rows.reasons)
        .fetch_all(&mut *conn)
        .await?;
        for (id, customer, kind, value, detect_time, inserted) in stored {
            let key = (customer, kind, value);
            if inserted {
                written.new_conflicts.insert(key.clone());
            }
            written.conflicts.insert(key, (id, detect_time));
        }
    }

    let mut events = Vec::new();
    let changes: Vec<pb::CustomerChange> = plan
        .touched
        .iter()
        .map(|touched| pb::CustomerChange {
            customer_id: written.id(touched.customer),
            created: touched.created,
            external_id: touched.external_id.clone().unwrap_or_default(),
            birth_date: touched
                .profile
                .birth_date
                .map(|d| d.to_string())
                .unwrap_or_default(),
            postcode: touched.profile.postcode.clone().unwrap_or_default(),
            country: touched.profile.country.clone().unwrap_or_default(),
        })
        .collect();
    if !changes.is_empty() {
        events.push(NewEvent::new(
            tenant,
            "customer.upserted",
            &pb::CustomersUpserted { customers: changes },
        ));
    }
    if !plan.merged_into.is_empty() {
        let by_step: HashMap<i64, &identity::MergeStep> =
            plan.merges.iter().map(|m| (m.merged, m)).collect();
        let merges = plan
            .merged_into
            .iter()
            .map(|(merged, survivor)| pb::CustomerMerge {
                survivor_customer_id: written.id(*survivor),
                merged_customer_id: *merged,
                via_kind: by_step[merged].via.kind().to_proto() as i32,
                merge_time: Some(to_timestamp(Utc::now())),
            })
            .collect();
        events.push(NewEvent::new(
            tenant,
            "customer.merged",
            &pb::CustomersMerged { merges },
        ));
    }
    outbox.publish(conn, events).await?;
    Ok(written)
}

/// Moves what merged customers hold to their survivors and empties the merged rows. Orders stay where they are:
/// they reach the survivor through `merged_into` (see the orders table in the migration).
async fn rekey_merged(
    conn: &mut PgConnection,
    tenant: &TenantId,
    merged: &[i64],
    survivors: &[i64],
) -> Result<(), sqlx::Error> {
    // Each statement joins the (merged, survivor) pairs; one round trip per table, whatever the number of merges.
    let statements = [
        "UPDATE customers c SET merged_into = m.survivor, given_name = NULL, family_name = NULL,
             birth_date = NULL, postcode = NULL, country = NULL, update_time = now()
         FROM unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor)
         WHERE c.tenant_id = $1 AND c.id = m.merged",
        // Customers merged earlier into one now merged point straight at the final survivor.
        "UPDATE customers c SET merged_into = m.survivor
         FROM unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor)
         WHERE c.tenant_id = $1 AND c.merged_into = m.merged",
        "UPDATE identifiers i SET customer_id = m.survivor
         FROM unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor)
         WHERE i.tenant_id = $1 AND i.customer_id = m.merged",
        "UPDATE market_transactions t SET customer_id = m.survivor
         FROM unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor)
         WHERE t.tenant_id = $1 AND t.customer_id = m.merged",
        "UPDATE engagement_events e SET customer_id = m.survivor
         FROM unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor)
         WHERE e.tenant_id = $1 AND e.customer_id = m.merged",
        // Current consent: the latest decision across the merged customers wins.
        "INSERT INTO consents (tenant_id, customer_id, channel, purpose, granted, change_time, source)
         SELECT DISTINCT ON (m.survivor, c.channel, c.purpose)
                $1, m.survivor, c.channel, c.purpose, c.granted, c.change_time, c.source
         FROM consents c JOIN unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor) ON c.customer_id = m.merged
         WHERE c.tenant_id = $1
         ORDER BY m.survivor, c.channel, c.purpose, c.change_time DESC
         ON CONFLICT (tenant_id, customer_id, channel, purpose) DO UPDATE SET
             granted = EXCLUDED.granted, change_time = EXCLUDED.change_time, source = EXCLUDED.source
         WHERE EXCLUDED.change_time > consents.change_time",
        "DELETE FROM consents c USING unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor)
         WHERE c.tenant_id = $1 AND c.customer_id = m.merged",
        "INSERT INTO consent_history (tenant_id, customer_id, channel, purpose, change_time, granted, source, record_time)
         SELECT $1, m.survivor, h.channel, h.purpose, h.change_time, h.granted, h.source, h.record_time
         FROM consent_history h JOIN unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor) ON h.customer_id = m.merged
         WHERE h.tenant_id = $1
         ON CONFLICT DO NOTHING",
        "DELETE FROM consent_history h USING unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor)
         WHERE h.tenant_id = $1 AND h.customer_id = m.merged",
        "UPDATE identity_conflicts k SET other_customer_id = m.survivor
         FROM unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor)
         WHERE k.tenant_id = $1 AND k.other_customer_id = m.merged",
        "INSERT INTO identity_conflicts
             (tenant_id, customer_id, other_customer_id, kind, value, existing_value, reason, detect_time, last_seen)
         SELECT $1, m.survivor, k.other_customer_id, k.kind, k.value, k.existing_value, k.reason, k.detect_time, k.last_seen
         FROM identity_conflicts k JOIN unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor) ON k.customer_id = m.merged
         WHERE k.tenant_id = $1
         ON CONFLICT DO NOTHING",
        "DELETE FROM identity_conflicts k USING unnest($2::bigint[], $3::bigint[]) AS m(merged, survivor)
         WHERE k.tenant_id = $1 AND k.customer_id = m.merged",
    ];
    // Every statement uses all three parameters: sqlx caches prepared statements by their text, so a statement bound
    // here with three arguments must not share its text with one bound elsewhere with two.
    for statement in statements {
        sqlx::query(statement)
            .bind(tenant.as_str())
            .bind(merged)
            .bind(survivors)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[derive(Default)]
struct ProfileColumns {
    ids: Vec<i64>,
    given_names: Vec<Option<String>>,
    family_names: Vec<Option<String>>,
    birth_dates: Vec<Option<NaiveDate>>,
    postcodes: Vec<Option<String>>,
    countries: Vec<Option<String>>,
}

impl ProfileColumns {
    fn push(&mut self, id: i64, profile: &Profile) {
        self.ids.push(id);
        self.given_names.push(profile.given_name.clone());
        self.family_names.push(profile.family_name.clone());
        self.birth_dates.push(profile.birth_date);
        self.postcodes.push(profile.postcode.clone());
        self.countries.push(profile.country.clone());
    }
}

#[derive(Default)]
struct ConflictColumns {
    customers: Vec<i64>,
    others: Vec<Option<i64>>,
    kinds: Vec<i16>,
    values: Vec<String>,
    existing: Vec<String>,
    reasons: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct CustomerRow {
    id: i64,
    given_name: Option<String>,
    family_name: Option<String>,
    birth_date: Option<NaiveDate>,
    postcode: Option<String>,
    country: Option<String>,
    merged_into: Option<i64>,
    create_time: DateTime<Utc>,
    update_time: DateTime<Utc>,
}

/// A customer with its identifiers, consents and merge history; a merged customer resolves to its survivor.
pub async fn get(
    pool: &PgPool,
    tenant: &TenantId,
    id: i64,
) -> Result<Option<pb::Customer>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let select = "SELECT id, given_name, family_name, birth_date, postcode, country, merged_into, create_time, update_time
                  FROM customers WHERE tenant_id = $1 AND id = $2";
    let Some(mut row) = sqlx::query_as::<_, CustomerRow>(select)
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    if let Some(survivor) = row.merged_into {
        // Merge chains are kept flat, so one hop reaches the survivor.
        match sqlx::query_as::<_, CustomerRow>(select)
            .bind(tenant.as_str())
            .bind(survivor)
            .fetch_optional(&mut *conn)
            .await?
        {
            Some(survivor) => row = survivor,
            None => return Ok(None),
        }
    }
    let identifiers: Vec<(i16, String)> = sqlx::query_as(
        "SELECT kind, value FROM identifiers WHERE tenant_id = $1 AND customer_id = $2 ORDER BY kind, value",
    )
    .bind(tenant.as_str())
    .bind(row.id)
    .fetch_all(&mut *conn)
    .await?;
    let consents: Vec<(i16, i16, bool, DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT channel, purpose, granted, change_time, source FROM consents
         WHERE tenant_id = $1 AND customer_id = $2 ORDER BY channel, purpose",
    )
    .bind(tenant.as_str())
    .bind(row.id)
    .fetch_all(&mut *conn)
    .await?;
    let merges: Vec<(i64, i16, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT merged_id, via_kind, via_value, reason, merge_time FROM merges
         WHERE tenant_id = $1 AND survivor_id IN (
             SELECT $2 UNION ALL SELECT id FROM customers WHERE tenant_id = $1 AND merged_into = $2)
         ORDER BY merge_time, id",
    )
    .bind(tenant.as_str())
    .bind(row.id)
    .fetch_all(&mut *conn)
    .await?;
    let stored = |kind: i16, value: String| {
        Kind::from_code(kind).map(|kind| Identifier::from_stored(kind, value))
    };
    Ok(Some(pb::Customer {
        name: customer_name(tenant, row.id),
        identifiers: identifiers
            .into_iter()
            .filter_map(|(kind, value)| stored(kind, value).map(|id| id.to_proto()))
            .collect(),
        given_name: row.given_name.unwrap_or_default(),
        family_name: row.family_name.unwrap_or_default(),
        birth_date: row.birth_date.map(|d| d.to_string()).unwrap_or_default(),
        postcode: row.postcode.unwrap_or_default(),
        country: row.country.unwrap_or_default(),
        consents: consents
            .into_iter()
            .map(
                |(channel, purpose, granted, change_time, source)| pb::Consent {
                    channel: i32::from(channel),
                    purpose: i32::from(purpose),
                    granted,
                    change_time: Some(to_timestamp(change_time)),
                    source,
                },
            )
            .collect(),
        merges: merges
            .into_iter()
            .map(|(merged, kind, value, reason, merge_time)| pb::Merge {
                merged_customer: customer_name(tenant, merged),
                via: stored(kind, value).map(|id| id.to_proto()),
                reason,
                merge_time: Some(to_timestamp(merge_time)),
            })
            .collect(),
        create_time: Some(to_timestamp(row.create_time)),
        update_time: Some(to_timestamp(row.update_time)),
    }))
}

/// The customer owning `identifier`.
pub async fn lookup(
    pool: &PgPool,
    tenant: &TenantId,
    identifier: &Identifier,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT customer_id FROM identifiers WHERE tenant_id = $1 AND kind = $2 AND value = $3",
    )
    .bind(tenant.as_str())
    .bind(identifier.kind().code())
    .bind(identifier.value())
    .fetch_optional(pool)
    .await
}

#[derive(sqlx::FromRow)]
struct ConflictRow {
    id: i64,
    customer_id: i64,
    other_customer_id: Option<i64>,
    kind: i16,
    value: String,
    existing_value: String,
    reason: String,
    detect_time: DateTime<Utc>,
}

/// A page of identity conflicts, newest first, starting below `before` (an id).
pub async fn list_conflicts(
    pool: &PgPool,
    tenant: &TenantId,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<pb::IdentityConflict>, sqlx::Error> {
    let rows: Vec<ConflictRow> = sqlx::query_as(
        "SELECT id, customer_id, other_customer_id, kind, value, existing_value, reason, detect_time
         FROM identity_conflicts
         WHERE tenant_id = $1 AND ($2::bigint IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
    )
    .bind(tenant.as_str())
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let kind = Kind::from_code(row.kind)?;
            Some(pb::IdentityConflict {
                name: format!("tenants/{tenant}/identityConflicts/{}", row.id),
                customer: customer_name(tenant, row.customer_id),
                other_customer: row
                    .other_customer_id
                    .map(|other| customer_name(tenant, other))
                    .unwrap_or_default(),
                identifier: Some(Identifier::from_stored(kind, row.value).to_proto()),
                existing: Some(Identifier::from_stored(kind, row.existing_value).to_proto()),
                reason: row.reason,
                detect_time: Some(to_timestamp(row.detect_time)),
            })
        })
        .collect())
}
