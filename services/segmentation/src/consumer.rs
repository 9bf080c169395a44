//! Applies ingestion's events: keeps the projection of customers, orders, transactions, engagement and consents, and
//! refreshes the memberships of every customer they touch, in the consumer's transaction (so each event counts once).

use std::collections::BTreeMap;

use boomerang_auth::TenantId;
use boomerang_events::{EventHandler, HandlerError, decode_payload};
use boomerang_proto::events::Event;
use boomerang_proto::ingestion as pb;
use sqlx::PgConnection;

use crate::db::projection;
use crate::writer::{Pending, Removal, Writer};

/// Event types segmentation reads.
pub const TYPE_PREFIXES: &[&str] = &[
    "customer.",
    "order.",
    "transaction.",
    "engagement.",
    "consent.",
];

pub struct IngestionEvents {
    pub writer: Writer,
}

#[derive(Default)]
struct TenantWork {
    customers: Vec<i64>,
    removals: Vec<Removal>,
}

impl EventHandler for IngestionEvents {
    type AfterCommit = Vec<Pending>;

    async fn handle(
        &self,
        tx: &mut PgConnection,
        events: &[Event],
    ) -> Result<Vec<Pending>, HandlerError> {
        // Tenants in a fixed order, so two writers never wait on each other's locks in opposite orders.
        let mut work: BTreeMap<&str, TenantWork> = BTreeMap::new();
        for event in events {
            let tenant = event.tenant.as_str();
            let entry = work.entry(tenant).or_default();
            match event.r#type.as_str() {
                "customer.upserted" => {
                    let payload: pb::CustomersUpserted = decode_payload(event)?;
                    entry.customers.extend(
                        projection::upsert_customers(tx, tenant, &payload.customers).await?,
                    );
                }
                "order.upserted" => {
                    let payload: pb::OrdersUpserted = decode_payload(event)?;
                    entry
                        .customers
                        .extend(projection::upsert_orders(tx, tenant, &payload.orders).await?);
                }
                "transaction.ingested" => {
                    let payload: pb::TransactionsIngested = decode_payload(event)?;
                    entry.customers.extend(
                        projection::insert_transactions(tx, tenant, &payload.transactions).await?,
                    );
                }
                "engagement.ingested" => {
                    let payload: pb::EngagementIngested = decode_payload(event)?;
                    entry
                        .customers
                        .extend(projection::record_engagement(tx, tenant, &payload.events).await?);
                }
                "consent.changed" => {
                    let payload: pb::ConsentsChanged = decode_payload(event)?;
                    entry
                        .customers
                        .extend(projection::upsert_consents(tx, tenant, &payload.changes).await?);
                }
                "customer.merged" => {
                    let payload: pb::CustomersMerged = decode_payload(event)?;
                    projection::merge(tx, tenant, &payload.merges).await?;
                    for merge in &payload.merges {
                        entry.customers.push(merge.survivor_customer_id);
                        entry.removals.push(Removal {
                            customer_id: merge.merged_customer_id,
                            reason: format!("merged into customer {}", merge.survivor_customer_id),
                            erase: false,
                        });
                    }
                }
                "customer.erased" => {
                    let payload: pb::CustomerErased = decode_payload(event)?;
                    projection::erase(tx, tenant, &payload.customer_ids).await?;
                    entry
                        .removals
                        .extend(payload.customer_ids.iter().map(|id| Removal {
                            customer_id: *id,
                            reason: "erased".into(),
                            erase: true,
                        }));
                }
                _ => {}
            }
        }
        let mut pending = Vec::with_capacity(work.len());
        for (tenant, work) in work {
            if work.customers.is_empty() && work.removals.is_empty() {
                continue;
            }
            let tenant =
                TenantId::parse(tenant).map_err(|err| HandlerError::Other(err.to_string()))?;
            let lock = self.writer.lock(tenant.as_str()).await;
            pending.push(
                self.writer
                    .refresh(tx, lock, &tenant, &work.customers, &work.removals)
                    .await?,
            );
        }
        Ok(pending)
    }

    async fn after_commit(&self, pending: Vec<Pending>) {
        for work in pending {
            self.writer.publish(work).await;
        }
    }
}
