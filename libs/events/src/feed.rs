use std::time::Duration;

use boomerang_auth::{Caller, TenantId};
use boomerang_proto::events::{Event, WatchEventsRequest, WatchEventsResponse};
use boomerang_service_kit::Shutdown;
use boomerang_service_kit::status::FieldViolations;
use boomerang_service_kit::time::to_timestamp;
use chrono::{DateTime, Utc};
use futures::Stream;
use prost::Message;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::Outbox;
use crate::sequencer::listen;

/// Events per WatchEvents response. Each event may itself carry thousands of changes.
const EVENTS_PER_RESPONSE: i64 = 100;
/// How often the head is re-read when no notification arrives.
const FALLBACK_POLL: Duration = Duration::from_millis(500);
/// The scope a caller needs to watch any service's events.
pub const WATCH_SCOPE: &str = "events.watch";

/// Serves a service's outbox as WatchEvents streams. Cheap to clone; one per service per process.
#[derive(Clone, Debug)]
pub struct EventFeed {
    pool: PgPool,
    head: watch::Receiver<i64>,
    shutdown: Shutdown,
}

impl EventFeed {
    /// Starts following the outbox head (the last sequenced position) of `outbox`.
    pub fn start(pool: PgPool, outbox: Outbox, shutdown: Shutdown) -> (Self, JoinHandle<()>) {
        let (sender, head) = watch::channel(0);
        let task = tokio::spawn(follow_head(pool.clone(), outbox, sender, shutdown.clone()));
        (
            Self {
                pool,
                head,
                shutdown,
            },
            task,
        )
    }

    /// The stream of events after `request.after_position` that `caller` may see, which stays open for new events
    /// until the caller goes away or the server shuts down.
    pub fn watch(
        &self,
        caller: &Caller,
        request: WatchEventsRequest,
    ) -> Result<impl Stream<Item = Result<WatchEventsResponse, Status>> + Send + 'static, Status>
    {
        let filter = Filter::new(caller, request)?;
        let (sender, receiver) = mpsc::channel(2);
        tokio::spawn(stream_events(
            self.pool.clone(),
            self.head.clone(),
            self.shutdown.clone(),
            filter,
            sender,
        ));
        Ok(ReceiverStream::new(receiver))
    }
}

/// The most event type prefixes one watch filters on.
const MOST_TYPE_PREFIXES: usize = 100;

struct Filter {
    after: i64,
    tenants: Option<Vec<String>>,
    type_prefixes: Option<Vec<String>>,
}

impl Filter {
    fn new(caller: &Caller, request: WatchEventsRequest) -> Result<Self, Status> {
        let mut violations = FieldViolations::new();
        if request.after_position < 0 {
            violations.add("after_position", "must not be negative");
        }
        let mut tenants = Vec::with_capacity(request.tenants.len());
        for (i, raw) in request.tenants.iter().enumerate() {
            match TenantId::parse(raw) {
                Ok(tenant) => tenants.push(tenant),
                Err(err) => violations.add(format!("tenants[{i}]"), err.to_string()),
            }
        }
        if request.type_prefixes.len() > MOST_TYPE_PREFIXES {
            violations.add(
                "type_prefixes",
                format!("must have at most {MOST_TYPE_PREFIXES} entries"),
            );
        }
        for (i, prefix) in request.type_prefixes.iter().enumerate() {
            if prefix.len() > 200 || prefix.contains('\0') {
                violations.add(
                    format!("type_prefixes[{i}]"),
                    "must be at most 200 bytes, without NUL characters",
                );
            }
        }
        violations.check()?;
        if !caller.has_scope(WATCH_SCOPE) {
            return Err(Status::permission_denied(format!(
                "permission denied: the caller may not use {WATCH_SCOPE}"
            )));
        }
        for tenant in &tenants {
            caller.authorize(tenant, WATCH_SCOPE)?;
        }
        // An unrestricted caller that names no tenant sees all; a restricted one sees its own.
        let tenants = match (tenants.is_empty(), caller.tenants()) {
            (false, _) => Some(tenants.iter().map(|t| t.as_str().to_owned()).collect()),
            (true, None) => None,
            (true, Some(own)) => Some(own.to_vec()),
        };
        let type_prefixes = (!request.type_prefixes.is_empty()).then_some(request.type_prefixes);
        Ok(Self {
            after: request.after_position,
            tenants,
            type_prefixes,
        })
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    position: i64,
    event_id: uuid::Uuid,
    tenant_id: String,
    event_type: String,
    payload: Vec<u8>,
    create_time: DateTime<Utc>,
}

impl EventRow {
    fn into_event(self) -> Result<Event, prost::DecodeError> {
        Ok(Event {
            id: self.event_id.to_string(),
            position: self.position,
            tenant: self.tenant_id,
            r#type: self.event_type,
            create_time: Some(to_timestamp(self.create_time)),
            payload: Some(prost_types::Any::decode(self.payload.as_slice())?),
        })
    }
}

async fn stream_events(
    pool: PgPool,
    mut head: watch::Receiver<i64>,
    shutdown: Shutdown,
    filter: Filter,
    sender: mpsc::Sender<Result<WatchEventsResponse, Status>>,
) {
    let mut cursor = filter.after;
    loop {
        let known_head = *head.borrow_and_update();
        if known_head > cursor {
            let rows = sqlx::query_as::<_, EventRow>(
                "SELECT position, event_id, tenant_id, event_type, payload, create_time
                 FROM outbox
                 WHERE position > $1 AND position <= $2
                   AND ($3::text[] IS NULL OR tenant_id = ANY($3))
                   AND ($4::text[] IS NULL OR EXISTS (
                       SELECT 1 FROM unnest($4::text[]) AS p(prefix) WHERE starts_with(event_type, p.prefix)))
                 ORDER BY position
                 LIMIT $5",
            )
            .bind(cursor)
            .bind(known_head)
            .bind(&filter.tenants)
            .bind(&filter.type_prefixes)
            .bind(EVENTS_PER_RESPONSE)
            .fetch_all(&pool)
            .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(err) => {
                    tracing::warn!(error = %err, "reading outbox failed; ending watch stream");
                    let _ = sender
                        .send(Err(Status::unavailable(
                            "event stream interrupted; resume from your cursor",
                        )))
                        .await;
                    return;
                }
            };
            let full = rows.len() as i64 == EVENTS_PER_RESPONSE;
            // Every position up to the head is committed and visible, so a short page means nothing more matches
            // up to the head and the cursor can jump there.
            cursor = match (full, rows.last()) {
                (true, Some(last)) => last.position,
                _ => known_head,
            };
            if !rows.is_empty() {
                let events: Result<Vec<Event>, _> =
                    rows.into_iter().map(EventRow::into_event).collect();
                let response = match events {
                    Ok(events) => Ok(WatchEventsResponse { events }),
                    Err(err) => {
                        tracing::error!(error = %err, "undecodable event in outbox");
                        Err(Status::internal("internal error"))
                    }
                };
                if sender.send(response).await.is_err() {
                    return; // the caller went away
                }
            }
            if full {
                continue;
            }
        }
        tokio::select! {
            changed = head.changed() => if changed.is_err() { return },
            () = sender.closed() => return,
            () = shutdown.wait() => return,
        }
    }
}

/// Keeps `head` at the last sequenced position: from the sequencer's notifications, and by polling when they stop.
async fn follow_head(pool: PgPool, outbox: Outbox, head: watch::Sender<i64>, shutdown: Shutdown) {
    let channel = outbox.sequenced_channel();
    let mut listener = None;
    while !shutdown.is_triggered() {
        if listener.is_none() {
            listener = listen(&pool, &channel).await;
        }
        match sqlx::query_scalar::<_, i64>(
            "SELECT last_position FROM outbox_sequencer WHERE id = 1",
        )
        .fetch_one(&pool)
        .await
        {
            Ok(position) => {
                head.send_if_modified(|current| advance(current, position));
            }
            Err(err) => tracing::debug!(error = %err, "cannot read outbox head"),
        }
        let notified = async {
            match listener.as_mut() {
                Some(l) => l.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = notified => match result {
                Ok(notification) => {
                    if let Ok(position) = notification.payload().parse::<i64>() {
                        head.send_if_modified(|current| advance(current, position));
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "outbox head listener lost; reconnecting");
                    listener = None;
                }
            },
            () = tokio::time::sleep(FALLBACK_POLL) => {}
            () = shutdown.wait() => {}
        }
    }
}

fn advance(current: &mut i64, position: i64) -> bool {
    if position > *current {
        *current = position;
        true
    } else {
        false
    }
}
