//! Consent: every decision in the history, the latest per channel and purpose as the current state.

use std::collections::HashMap;

use boomerang_auth::TenantId;
use boomerang_events::{NewEvent, Outbox};
use boomerang_proto::ingestion as pb;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::cache::IdentityCache;
use super::customer_name;
use super::refs::Attaching;
use crate::domain::batch::{Fate, Mode, refusals};
use crate::domain::consent::ConsentChange;
use crate::error::IngestionError;

/// Records consent decisions. A decision already in the history is a duplicate; a decision older than the current
/// one is kept in the history but does not change the current state.
pub async fn set(
    pool: &PgPool,
    outbox: &Outbox,
    cache: &IdentityCache,
    tenant: &TenantId,
    changes: Vec<(usize, ConsentChange)>,
    mode: Mode,
) -> Result<Vec<(usize, Fate)>, IngestionError> {
    let mut batch = Attaching::begin(
        pool,
        tenant,
        cache,
        changes.iter().map(|(_, c)| &c.customer),
    )
    .await?;
    let mut fates = Vec::new();
    let mut kept = Vec::with_capacity(changes.len());
    for (index, change) in changes {
        match batch.resolved.customer_of(Some(&change.customer)) {
            Err(reason) => fates.push((
                index,
                Fate::Refused {
                    field: "customer".into(),
                    reason,
                },
            )),
            Ok(customer) => kept.push((index, change, customer.expect("resolved customer"))),
        }
    }
    // The history keeps one decision per customer, channel, purpose and time. A second one that says otherwise, in
    // this batch or already recorded, would be dropped while reported stored, so it is refused.
    let key = |change: &ConsentChange, customer: i64| {
        (
            customer,
            change.channel as i16,
            change.purpose as i16,
            change.change_time,
        )
    };
    let keys: Vec<_> = kept
        .iter()
        .map(|(_, c, customer)| key(c, *customer))
        .collect();
    let recorded: Vec<(i64, i16, i16, DateTime<Utc>, bool)> = sqlx::query_as(
        "SELECT h.customer_id, h.channel, h.purpose, h.change_time, h.granted
         FROM consent_history h
         JOIN unnest($2::bigint[], $3::smallint[], $4::smallint[], $5::timestamptz[])
              AS k(customer_id, channel, purpose, change_time)
           USING (customer_id, channel, purpose, change_time)
         WHERE h.tenant_id = $1",
    )
    .bind(tenant.as_str())
    .bind(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.1).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.2).collect::<Vec<_>>())
    .bind(keys.iter().map(|k| k.3).collect::<Vec<_>>())
    .fetch_all(&mut *batch.tx)
    .await?;
    let mut decided: HashMap<(i64, i16, i16, DateTime<Utc>), bool> = recorded
        .into_iter()
        .map(|(customer, channel, purpose, time, granted)| {
            ((customer, channel, purpose, time), granted)
        })
        .collect();
    kept.retain(|(index, change, customer)| {
        match decided.get(&key(change, *customer)) {
            Some(&granted) if granted != change.granted => {
                fates.push((
                    *index,
                    Fate::Refused {
                        field: "granted".into(),
                        reason: format!(
                            "another decision for this customer, channel, purpose and time says granted = {granted}"
                        ),
                    },
                ));
                false
            }
            _ => {
                decided.insert(key(change, *customer), change.granted);
                true
            }
        }
    });
    if mode == Mode::Atomic && !fates.is_empty() {
        return Err(IngestionError::Refused(refusals(&fates, "changes")));
    }

    let customers: Vec<i64> = kept.iter().map(|(_, _, c)| *c).collect();
    let channels: Vec<i16> = kept.iter().map(|(_, c, _)| c.channel as i16).collect();
    let purposes: Vec<i16> = kept.iter().map(|(_, c, _)| c.purpose as i16).collect();
    let times: Vec<DateTime<Utc>> = kept.iter().map(|(_, c, _)| c.change_time).collect();
    let granted: Vec<bool> = kept.iter().map(|(_, c, _)| c.granted).collect();
    let sources: Vec<&str> = kept.iter().map(|(_, c, _)| c.source.as_str()).collect();
    let recorded: Vec<(i64, i16, i16, DateTime<Utc>)> = sqlx::query_as(
        "INSERT INTO consent_history (tenant_id, customer_id, channel, purpose, change_time, granted, source)
         SELECT $1, * FROM unnest($2::bigint[], $3::smallint[], $4::smallint[], $5::timestamptz[], $6::boolean[], $7::text[])
         ON CONFLICT DO NOTHING
         RETURNING customer_id, channel, purpose, change_time",
    )
    .bind(tenant.as_str())
    .bind(&customers)
    .bind(&channels)
    .bind(&purposes)
    .bind(&times)
    .bind(&granted)
    .bind(&sources)
    .fetch_all(&mut *batch.tx)
    .await?;
    let new: std::collections::HashSet<_> = recorded.into_iter().collect();

    // The latest new decision per (customer, channel, purpose) competes with the current one.
    let mut latest: HashMap<(i64, i16, i16), &ConsentChange> = HashMap::new();
    for (_, change, customer) in &kept {
        let key = (*customer, change.channel as i16, change.purpose as i16);
        if new.contains(&(key.0, key.1, key.2, change.change_time)) {
            let entry = latest.entry(key).or_insert(change);
            if change.change_time > entry.change_time {
                *entry = change;
            }
        }
    }
    let mut current = Vec::new();
    if !latest.is_empty() {
        let (mut c, mut ch, mut pu, mut gr, mut ti, mut so) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        for ((customer, channel, purpose), change) in &latest {
            c.push(*customer);
            ch.push(*channel);
            pu.push(*purpose);
            gr.push(change.granted);
            ti.push(change.change_time);
            so.push(change.source.as_str());
        }
        let updated: Vec<(i64, i16, i16)> = sqlx::query_as(
            "INSERT INTO consents AS c (tenant_id, customer_id, channel, purpose, granted, change_time, source)
             SELECT $1, * FROM unnest($2::bigint[], $3::smallint[], $4::smallint[], $5::boolean[], $6::timestamptz[], $7::text[])
             ON CONFLICT (tenant_id, customer_id, channel, purpose) DO UPDATE SET
                 granted = EXCLUDED.granted, change_time = EXCLUDED.change_time, source = EXCLUDED.source
             WHERE EXCLUDED.change_time > c.change_time
             RETURNING customer_id, channel, purpose",
        )
        .bind(tenant.as_str())
        .bind(&c)
        .bind(&ch)
        .bind(&pu)
        .bind(&gr)
        .bind(&ti)
        .bind(&so)
        .fetch_all(&mut *batch.tx)
        .await?;
        current = updated
            .into_iter()
            .map(|key| pb::ConsentUpdate {
                customer_id: key.0,
                consent: Some(latest[&key].to_proto()),
            })
            .collect();
    }

    for (index, change, customer) in &kept {
        let resource = customer_name(tenant, *customer);
        let key = (
            *customer,
            change.channel as i16,
            change.purpose as i16,
            change.change_time,
        );
        fates.push(if new.contains(&key) {
            (*index, Fate::Accepted { resource })
        } else {
            (*index, Fate::Duplicate { resource })
        });
    }
    let event = (!current.is_empty()).then(|| {
        NewEvent::new(
            tenant,
            "consent.changed",
            &pb::ConsentsChanged { changes: current },
        )
    });
    batch.commit(outbox, cache, tenant, event).await?;
    Ok(fates)
}
