//! The gRPC API: authorization, request validation and the mapping between protobuf and domain types.

use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;

use boomerang_auth::{Caller, TenantId, caller, customer_number};
use boomerang_events::{EventFeed, Outbox};
use boomerang_proto::events::{WatchEventsRequest, WatchEventsResponse};
use boomerang_proto::ingestion as pb;
use boomerang_proto::ingestion::ingestion_service_server::IngestionService;
use boomerang_service_kit::status::{FieldViolations, invalid_argument};
use chrono::Utc;
use futures::{Stream, StreamExt};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::config::IngestionConfig;
use crate::db;
use crate::db::cache::IdentityCache;
use crate::domain::activity::{EngagementEvent, MarketTransaction};
use crate::domain::batch::{Fate, Mode, Validated, results};
use crate::domain::consent::ConsentChange;
use crate::domain::customer::CustomerRecord;
use crate::domain::identifier::Identifier;
use crate::domain::order::{Order, parse_status};
use crate::domain::text::check_id;
use crate::error::IngestionError;

/// Reading customers and conflicts.
pub const READ: &str = "ingestion.read";
/// Ingesting anything.
pub const WRITE: &str = "ingestion.write";
/// Erasing a person.
pub const ERASE: &str = "ingestion.erase";

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The ingestion service's gRPC handlers.
#[derive(Clone)]
pub struct IngestionApi {
    pub pool: PgPool,
    pub outbox: Outbox,
    pub cache: Arc<IdentityCache>,
    pub feed: EventFeed,
    pub config: IngestionConfig,
}

/// A batch call's own fields, before they are checked.
struct BatchRequest<'a, P> {
    parent: &'a str,
    mode: i32,
    /// The request field holding the items, for field violations (`orders[3].…`).
    field: &'static str,
    items: &'a [P],
}

impl<'a, P> BatchRequest<'a, P> {
    fn new(parent: &'a str, mode: i32, field: &'static str, items: &'a [P]) -> Self {
        Self {
            parent,
            mode,
            field,
            items,
        }
    }
}

/// A checked batch request: its tenant and mode.
struct Batch {
    tenant: TenantId,
    mode: Mode,
}

impl IngestionApi {
    /// Parses the parent and authorizes the caller first (so a caller without access learns nothing else), then
    /// checks the mode and the batch size.
    fn open_batch(
        &self,
        caller: &Caller,
        parent: &str,
        mode: i32,
        len: usize,
        field: &str,
    ) -> Result<Batch, Status> {
        let tenant = TenantId::from_parent(parent)
            .map_err(|err| invalid_argument("parent", err.to_string()))?;
        caller.authorize(&tenant, WRITE)?;
        let mut violations = FieldViolations::new();
        let mode = Mode::from_proto(mode)
            .map_err(|err| violations.add("mode", err))
            .unwrap_or(Mode::Atomic);
        let max = self.config.max_batch_items;
        if len > max {
            violations.add(
                field,
                format!(
                    "at most {max} items per batch, got {len}; split it or stream it with Import"
                ),
            );
        }
        violations.check()?;
        Ok(Batch { tenant, mode })
    }

    async fn customers_batch(
        &self,
        caller: &Caller,
        parent: &str,
        mode: i32,
        records: &[pb::CustomerRecord],
    ) -> Result<(Vec<pb::ItemResult>, pb::BatchSummary), Status> {
        let batch = self.open_batch(caller, parent, mode, records.len(), "customers")?;
        // Records are not keyed by one id: repeats are resolved by identity resolution itself.
        let mut fates = vec![None; records.len()];
        let mut valid = Vec::with_capacity(records.len());
        let mut all = FieldViolations::new();
        for (index, record) in records.iter().enumerate() {
            match CustomerRecord::from_proto(record) {
                Ok(record) => valid.push((index, record)),
                Err(violations) => {
                    all.add_nested(&format!("customers[{index}]"), violations.clone());
                    fates[index] = Some(Fate::Invalid(violations));
                }
            }
        }
        if batch.mode == Mode::Atomic && !all.is_empty() {
            return Err(all.into_status());
        }
        let mut conflicts = vec![Vec::new(); records.len()];
        if !valid.is_empty() {
            for (index, fate, found) in
                db::customers::upsert(&self.pool, &self.outbox, &batch.tenant, valid, batch.mode)
                    .await?
            {
                fates[index] = Some(fate);
                conflicts[index] = found;
            }
        }
        let fates = fates
            .into_iter()
            .map(|f| f.expect("every record has a fate"))
            .collect();
        Ok(results(fates, conflicts))
    }

    /// The shape every keyed batch method shares: open the batch, validate every item, set exact repeats aside,
    /// write the rest with `write`, and report every item's fate.
    async fn keyed_batch<P, T, K, Fut>(
        &self,
        caller: &Caller,
        request: BatchRequest<'_, P>,
        validate: impl Fn(&P) -> Result<T, FieldViolations>,
        key: impl Fn(&T) -> K,
        write: impl FnOnce(TenantId, Vec<(usize, T)>, Mode) -> Fut,
    ) -> Result<(Vec<pb::ItemResult>, pb::BatchSummary), Status>
    where
        T: PartialEq,
        K: Hash + Eq,
        Fut: Future<Output = Result<Vec<(usize, Fate)>, IngestionError>>,
    {
        let BatchRequest {
            parent,
            mode,
            field,
            items,
        } = request;
        let batch = self.open_batch(caller, parent, mode, items.len(), field)?;
        let mut validated = Validated::new(items, field, batch.mode, validate, key)
            .map_err(FieldViolations::into_status)?;
        let to_write = std::mem::take(&mut validated.items);
        let written = if to_write.is_empty() {
            Vec::new()
        } else {
            write(batch.tenant, to_write, batch.mode).await?
        };
        Ok(results(validated.finish(written), Vec::new()))
    }

    async fn orders_batch(
        &self,
        caller: &Caller,
        request: BatchRequest<'_, pb::Order>,
    ) -> Result<(Vec<pb::ItemResult>, pb::BatchSummary), Status> {
        let now = Utc::now();
        let (pool, outbox, cache) = (self.pool.clone(), self.outbox.clone(), self.cache.clone());
        self.keyed_batch(
            caller,
            request,
            |o| Order::from_proto(o, now),
            |o| o.order_id.clone(),
            move |tenant, items, mode| async move {
                db::orders::ingest(&pool, &outbox, &cache, &tenant, items, mode).await
            },
        )
        .await
    }

    async fn transactions_batch(
        &self,
        caller: &Caller,
        request: BatchRequest<'_, pb::MarketTransaction>,
    ) -> Result<(Vec<pb::ItemResult>, pb::BatchSummary), Status> {
        let now = Utc::now();
        let (pool, outbox, cache) = (self.pool.clone(), self.outbox.clone(), self.cache.clone());
        self.keyed_batch(
            caller,
            request,
            |t| MarketTransaction::from_proto(t, now),
            |t| t.transaction_id.clone(),
            move |tenant, items, mode| async move {
                db::activity::ingest_transactions(&pool, &outbox, &cache, &tenant, items, mode)
                    .await
            },
        )
        .await
    }

    async fn engagement_batch(
        &self,
        caller: &Caller,
        request: BatchRequest<'_, pb::EngagementEvent>,
    ) -> Result<(Vec<pb::ItemResult>, pb::BatchSummary), Status> {
        let now = Utc::now();
        let (pool, outbox, cache) = (self.pool.clone(), self.outbox.clone(), self.cache.clone());
        self.keyed_batch(
            caller,
            request,
            |e| EngagementEvent::from_proto(e, now),
            |e| e.event_id.clone(),
            move |tenant, items, mode| async move {
                db::activity::ingest_engagement(&pool, &outbox, &cache, &tenant, items, mode).await
            },
        )
        .await
    }

    async fn import_chunk(
        &self,
        caller: &Caller,
        chunk: pb::ImportRequest,
    ) -> Result<pb::ImportResponse, Status> {
        let kinds = [
            !chunk.customers.is_empty(),
            !chunk.orders.is_empty(),
            !chunk.transactions.is_empty(),
            !chunk.engagement_events.is_empty(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return Err(invalid_argument(
                "customers",
                "a chunk carries one kind of item: customers, orders, transactions or engagement_events",
            ));
        }
        let (parent, mode) = (chunk.parent.as_str(), chunk.mode);
        let (results, summary) = if kinds[0] {
            self.customers_batch(caller, parent, mode, &chunk.customers)
                .await?
        } else if kinds[1] {
            let request = BatchRequest::new(parent, mode, "orders", &chunk.orders);
            self.orders_batch(caller, request).await?
        } else if kinds[2] {
            let request = BatchRequest::new(parent, mode, "transactions", &chunk.transactions);
            self.transactions_batch(caller, request).await?
        } else {
            let request =
                BatchRequest::new(parent, mode, "engagement_events", &chunk.engagement_events);
            self.engagement_batch(caller, request).await?
        };
        Ok(pb::ImportResponse {
            chunk_id: chunk.chunk_id,
            results,
            summary: Some(summary),
        })
    }

    async fn customer(&self, tenant: &TenantId, id: i64) -> Result<pb::Customer, Status> {
        db::customers::get(&self.pool, tenant, id)
            .await
            .map_err(IngestionError::from)?
            .ok_or_else(|| IngestionError::NotFound(db::customer_name(tenant, id)).into())
    }
}

/// Parses `tenants/{tenant}/customers/{id}` and authorizes `scope` on the tenant.
fn customer_name(caller: &Caller, name: &str, scope: &str) -> Result<(TenantId, i64), Status> {
    let malformed = || {
        invalid_argument(
            "name",
            "must have the form tenants/{tenant}/customers/{customer}",
        )
    };
    let (parent, id) = name.rsplit_once("/customers/").ok_or_else(malformed)?;
    let tenant = TenantId::from_parent(parent).map_err(|_| malformed())?;
    caller.authorize(&tenant, scope)?;
    let id = customer_number(id).ok_or_else(malformed)?;
    Ok((tenant, id))
}

fn tenant_of(caller: &Caller, parent: &str, scope: &str) -> Result<TenantId, Status> {
    let tenant =
        TenantId::from_parent(parent).map_err(|err| invalid_argument("parent", err.to_string()))?;
    caller.authorize(&tenant, scope)?;
    Ok(tenant)
}

#[tonic::async_trait]
impl IngestionService for IngestionApi {
    async fn upsert_customers(
        &self,
        request: Request<pb::UpsertCustomersRequest>,
    ) -> Result<Response<pb::UpsertCustomersResponse>, Status> {
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let (results, summary) = self
            .customers_batch(&caller, &request.parent, request.mode, &request.customers)
            .await?;
        Ok(Response::new(pb::UpsertCustomersResponse {
            results,
            summary: Some(summary),
        }))
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let (tenant, id) = customer_name(caller(&request)?, &request.get_ref().name, READ)?;
        Ok(Response::new(self.customer(&tenant, id).await?))
    }

    async fn lookup_customer(
        &self,
        request: Request<pb::LookupCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let tenant = tenant_of(caller(&request)?, &request.get_ref().parent, READ)?;
        let raw = request
            .get_ref()
            .identifier
            .as_ref()
            .ok_or_else(|| invalid_argument("identifier", "is required"))?;
        let identifier = Identifier::from_proto(raw, None)
            .map_err(|(field, err)| invalid_argument(&format!("identifier.{field}"), err))?;
        let id = db::customers::lookup(&self.pool, &tenant, &identifier)
            .await
            .map_err(IngestionError::from)?
            .ok_or_else(|| {
                IngestionError::NotFound(format!("a customer with {}", identifier.kind().name()))
            })?;
        Ok(Response::new(self.customer(&tenant, id).await?))
    }

    async fn list_identity_conflicts(
        &self,
        request: Request<pb::ListIdentityConflictsRequest>,
    ) -> Result<Response<pb::ListIdentityConflictsResponse>, Status> {
        let tenant = tenant_of(caller(&request)?, &request.get_ref().parent, READ)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        let page_size = match request.page_size {
            0 => 100,
            size @ 1..=1000 => i64::from(size),
            _ => {
                violations.add("page_size", "must be between 0 and 1000");
                100
            }
        };
        let before = match request.page_token.as_str() {
            "" => None,
            token => token
                .parse::<i64>()
                .map_err(|_| violations.add("page_token", "is not a token this API returned"))
                .ok(),
        };
        violations.check()?;
        let conflicts = db::customers::list_conflicts(&self.pool, &tenant, before, page_size)
            .await
            .map_err(IngestionError::from)?;
        let next_page_token = if conflicts.len() as i64 == page_size {
            conflicts
                .last()
                .and_then(|c| c.name.rsplit('/').next())
                .unwrap_or_default()
                .to_owned()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListIdentityConflictsResponse {
            conflicts,
            next_page_token,
        }))
    }

    async fn ingest_orders(
        &self,
        request: Request<pb::IngestOrdersRequest>,
    ) -> Result<Response<pb::IngestOrdersResponse>, Status> {
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let batch = BatchRequest::new(&request.parent, request.mode, "orders", &request.orders);
        let (results, summary) = self.orders_batch(&caller, batch).await?;
        Ok(Response::new(pb::IngestOrdersResponse {
            results,
            summary: Some(summary),
        }))
    }

    async fn update_order_status(
        &self,
        request: Request<pb::UpdateOrderStatusRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let tenant = tenant_of(caller(&request)?, &request.get_ref().parent, WRITE)?;
        let request = request.into_inner();
        let mut violations = FieldViolations::new();
        if let Err(err) = check_id(&request.order_id) {
            violations.add("order_id", err);
        }
        let status = parse_status(request.status)
            .map_err(|err| violations.add("status", err))
            .ok();
        violations.check()?;
        let order = db::orders::update_status(
            &self.pool,
            &self.outbox,
            &tenant,
            &request.order_id,
            status.expect("checked above"),
        )
        .await
        .map_err(IngestionError::from)?
        .ok_or_else(|| IngestionError::NotFound(format!("order {:?}", request.order_id)))?;
        Ok(Response::new(order))
    }

    async fn ingest_transactions(
        &self,
        request: Request<pb::IngestTransactionsRequest>,
    ) -> Result<Response<pb::IngestTransactionsResponse>, Status> {
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let batch = BatchRequest::new(
            &request.parent,
            request.mode,
            "transactions",
            &request.transactions,
        );
        let (results, summary) = self.transactions_batch(&caller, batch).await?;
        Ok(Response::new(pb::IngestTransactionsResponse {
            results,
            summary: Some(summary),
        }))
    }

    async fn ingest_engagement_events(
        &self,
        request: Request<pb::IngestEngagementEventsRequest>,
    ) -> Result<Response<pb::IngestEngagementEventsResponse>, Status> {
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let batch = BatchRequest::new(&request.parent, request.mode, "events", &request.events);
        let (results, summary) = self.engagement_batch(&caller, batch).await?;
        Ok(Response::new(pb::IngestEngagementEventsResponse {
            results,
            summary: Some(summary),
        }))
    }

    async fn set_consents(
        &self,
        request: Request<pb::SetConsentsRequest>,
    ) -> Result<Response<pb::SetConsentsResponse>, Status> {
        let caller = caller(&request)?.clone();
        let request = request.into_inner();
        let now = Utc::now();
        let (pool, outbox, cache) = (self.pool.clone(), self.outbox.clone(), self.cache.clone());
        let (results, summary) = self
            .keyed_batch(
                &caller,
                BatchRequest::new(&request.parent, request.mode, "changes", &request.changes),
                |change| ConsentChange::from_proto(change, now),
                ConsentChange::key,
                move |tenant, items, mode| async move {
                    db::consent::set(&pool, &outbox, &cache, &tenant, items, mode).await
                },
            )
            .await?;
        Ok(Response::new(pb::SetConsentsResponse {
            results,
            summary: Some(summary),
        }))
    }

    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        let caller = caller(&request)?;
        let (tenant, id) = customer_name(caller, &request.get_ref().name, ERASE)?;
        let erased = db::erasure::erase(&self.pool, &self.outbox, &tenant, id)
            .await
            .map_err(IngestionError::from)?
            .ok_or_else(|| IngestionError::NotFound(db::customer_name(&tenant, id)))?;
        // An audit trail of who erased whom (ids only: the personal data is gone).
        tracing::info!(tenant = %tenant, customers = ?erased.customers, by = caller.subject(), "customer erased");
        Ok(Response::new(pb::EraseCustomerResponse {
            erased_customers: erased
                .customers
                .iter()
                .map(|id| db::customer_name(&tenant, *id))
                .collect(),
            suppressed_identifiers: erased.suppressed_identifiers,
        }))
    }

    type ImportStream = BoxStream<pb::ImportResponse>;

    async fn import(
        &self,
        request: Request<Streaming<pb::ImportRequest>>,
    ) -> Result<Response<Self::ImportStream>, Status> {
        let caller = caller(&request)?.clone();
        let mut chunks = request.into_inner();
        let api = self.clone();
        // Chunks are handled one at a time, in order; the small channel makes a fast sender wait for the database.
        let (sender, receiver) = mpsc::channel(2);
        tokio::spawn(async move {
            while let Some(chunk) = chunks.next().await {
                let result = match chunk {
                    Ok(chunk) => api.import_chunk(&caller, chunk).await,
                    Err(status) => Err(status),
                };
                let failed = result.is_err();
                if sender.send(result).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    type WatchEventsStream = BoxStream<WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = caller(&request)?.clone();
        let stream = self.feed.watch(&caller, request.into_inner())?;
        Ok(Response::new(Box::pin(stream)))
    }
}
