//! The backbone's guarantees, against real Postgres and a real gRPC stream: no event is skipped or reordered past a
//! consumer's cursor however writers interleave their commits, and a consumer killed mid-batch resumes with nothing
//! lost and nothing applied twice.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use boomerang_auth::TenantId;
use boomerang_events::{
    Consumer, ConsumerConfig, EventFeed, EventHandler, EventSource, HandlerError, NewEvent, Outbox,
    consumer_position, decode_payload, run_sequencer,
};
use boomerang_proto::events::{Event, WatchEventsRequest, WatchEventsResponse};
use boomerang_service_kit::{Platform, ServiceBundle};
use boomerang_testkit::{TestDb, TestRedis, TestServer, eventually};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use rand::Rng;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic_types::StatusExt;

const SCHEMA: &str = "backbone";
const METHOD: &str = "/test.Feed/WatchEvents";

/// Serves an EventFeed as `test.Feed/WatchEvents`, the way a service's generated server does.
#[derive(Clone)]
struct FeedService(EventFeed);

impl NamedService for FeedService {
    const NAME: &'static str = "test.Feed";
}

struct WatchCall(EventFeed);

impl tonic::server::ServerStreamingService<WatchEventsRequest> for WatchCall {
    type Response = WatchEventsResponse;
    type ResponseStream = BoxStream<'static, Result<WatchEventsResponse, tonic::Status>>;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::ResponseStream>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<WatchEventsRequest>) -> Self::Future {
        let feed = self.0.clone();
        Box::pin(async move {
            let caller = boomerang_auth::caller(&request)?.clone();
            let stream = feed.watch(&caller, request.into_inner())?;
            Ok(tonic::Response::new(
                Box::pin(stream) as Self::ResponseStream
            ))
        })
    }
}

impl tower::Service<http::Request<Body>> for FeedService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let feed = self.0.clone();
        Box::pin(async move {
            let codec =
                tonic_prost::ProstCodec::<WatchEventsResponse, WatchEventsRequest>::default();
            let mut grpc = tonic::server::Grpc::new(codec);
            Ok(grpc.server_streaming(WatchCall(feed), request).await)
        })
    }
}

struct Backbone {
    _db: TestDb,
    _redis: TestRedis,
    platform: Platform,
    pool: PgPool,
    outbox: Outbox,
    server: TestServer,
}

async fn backbone() -> Backbone {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let platform = boomerang_testkit::platform(&db, &redis);
    let pool = platform.pg_pool(SCHEMA).unwrap();
    boomerang_service_kit::db::ensure_schema(&pool, SCHEMA)
        .await
        .unwrap();
    boomerang_events::migrate(&pool).await.unwrap();
    sqlx::query(
        "CREATE TABLE seen (
             event_id text PRIMARY KEY,
             position bigint NOT NULL,
             writer bigint NOT NULL,
             seq int NOT NULL,
             handled bigint GENERATED ALWAYS AS IDENTITY
         )",
    )
    .execute(&pool)
    .await
    .unwrap();

    let outbox = Outbox::new(SCHEMA);
    let sequencer = tokio::spawn(run_sequencer(
        pool.clone(),
        outbox.clone(),
        Duration::from_secs(3600),
        platform.shutdown.clone(),
    ));
    let (feed, feed_task) =
        EventFeed::start(pool.clone(), outbox.clone(), platform.shutdown.clone());
    let bundle = ServiceBundle::new("test.Feed")
        .routes(move |routes| {
            routes.add_service(FeedService(feed));
        })
        .task(sequencer)
        .task(feed_task);
    let server = TestServer::start(&platform, vec![bundle]).await;
    Backbone {
        _db: db,
        _redis: redis,
        platform,
        pool,
        outbox,
        server,
    }
}

impl Backbone {
    fn consumer(&self, name: &str, gate: Option<Arc<Gate>>) -> Consumer<Recorder> {
        let source = EventSource {
            channel: self.server.channel(),
            method: METHOD,
            token: self.server.token(&["*"], &["events.watch"]),
        };
        let config = ConsumerConfig {
            name: name.to_owned(),
            tenants: vec![],
            type_prefixes: vec![],
        };
        Consumer::new(self.pool.clone(), source, config, Recorder { gate })
    }

    async fn seen(&self) -> Vec<(i64, i64, i32)> {
        sqlx::query_as("SELECT position, writer, seq FROM seen ORDER BY handled")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

/// Records each event it handles; a duplicate would violate the primary key and fail the batch.
struct Recorder {
    /// When set, each batch waits for a permit after writing its rows and before committing.
    gate: Option<Arc<Gate>>,
}

/// Batches pass one per permit; `arrived` counts the batches that reached it, so a test can tell when one waits.
struct Gate {
    permits: Semaphore,
    arrived: AtomicUsize,
}

impl Gate {
    fn new(permits: usize) -> Self {
        Self {
            permits: Semaphore::new(permits),
            arrived: AtomicUsize::new(0),
        }
    }
}

impl EventHandler for Recorder {
    type AfterCommit = ();

    async fn handle(&self, tx: &mut PgConnection, events: &[Event]) -> Result<(), HandlerError> {
        for event in events {
            let payload: prost_types::Duration = decode_payload(event)?;
            sqlx::query(
                "INSERT INTO seen (event_id, position, writer, seq) VALUES ($1, $2, $3, $4)",
            )
            .bind(&event.id)
            .bind(event.position)
            .bind(payload.seconds)
            .bind(payload.nanos)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(gate) = &self.gate {
            gate.arrived.fetch_add(1, Ordering::SeqCst);
            gate.permits.acquire().await.expect("gate open").forget();
        }
        Ok(())
    }

    async fn after_commit(&self, (): ()) {}
}

fn event(tenant: &TenantId, writer: i64, seq: i32) -> NewEvent {
    let payload = prost_types::Duration {
        seconds: writer,
        nanos: seq,
    };
    NewEvent::new(tenant, "test.written", &payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_lose_or_reorder_events_past_the_cursor() {
    let b = backbone().await;
    let consumer = tokio::spawn(b.consumer("ordered", None).run(b.platform.shutdown.clone()));
    let tenant = TenantId::parse("acme").unwrap();
    // Writer -1 warms the consumer up, so it is streaming while the writers below commit.
    let mut tx = b.pool.begin().await.unwrap();
    b.outbox
        .publish(&mut tx, vec![event(&tenant, -1, 0)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    eventually(Duration::from_secs(10), "the warm-up event", || async {
        (!b.seen().await.is_empty()).then_some(())
    })
    .await;

    const WRITERS: i64 = 16;
    const TRANSACTIONS: i32 = 40;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let pool = b.pool.clone();
        let outbox = b.outbox.clone();
        let tenant = tenant.clone();
        writers.push(tokio::spawn(async move {
            let mut committed = Vec::new();
            let mut seq = 0;
            for _ in 0..TRANSACTIONS {
                let (events, hold_ms, roll_back) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_range(1..=3),
                        rng.random_range(0..20),
                        rng.random_bool(0.1),
                    )
                };
                let mut tx = pool.begin().await.unwrap();
                let mut batch = Vec::new();
                let mut seqs = Vec::new();
                for _ in 0..events {
                    batch.push(event(&tenant, writer, seq));
                    seqs.push(seq);
                    seq += 1;
                }
                outbox.publish(&mut tx, batch).await.unwrap();
                // Hold the transaction open so commits land out of insert order: the trap the sequencer avoids.
                tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                if roll_back {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                    committed.extend(seqs.into_iter().map(|s| (writer, s)));
                }
            }
            committed
        }));
    }
    let mut expected = vec![(-1, 0)];
    for writer in writers {
        expected.extend(writer.await.unwrap());
    }
    expected.sort();

    let seen = eventually(Duration::from_secs(30), "every committed event", || async {
        let seen = b.seen().await;
        (seen.len() >= expected.len()).then_some(seen)
    })
    .await;

    let mut got: Vec<(i64, i32)> = seen.iter().map(|&(_, w, s)| (w, s)).collect();
    got.sort();
    assert_eq!(got, expected, "exactly the committed events, each once");
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0),
        "handled in strictly increasing position order"
    );
    for writer in 0..WRITERS {
        let order: Vec<i32> = seen.iter().filter(|e| e.1 == writer).map(|e| e.2).collect();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "writer {writer} kept its order"
        );
    }
    let head: i64 = sqlx::query_scalar("SELECT last_position FROM outbox_sequencer")
        .fetch_one(&b.pool)
        .await
        .unwrap();
    assert_eq!(
        head as usize,
        expected.len(),
        "positions are dense: rolled-back events took none"
    );
    eventually(Duration::from_secs(10), "cursor at the head", || async {
        (consumer_position(&b.pool, "ordered").await.unwrap() == head).then_some(())
    })
    .await;

    b.platform.shutdown.trigger();
    consumer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_batch_resumes_with_nothing_lost_or_doubled() {
    let b = backbone().await;
    let tenant = TenantId::parse("acme").unwrap();
    let mut tx = b.pool.begin().await.unwrap();
    // More than two batches can hold, however the responses arrive: a batch takes the responses already received, up
    // to 200 events and one response (100) more.
    let first: Vec<NewEvent> = (0..1000).map(|seq| event(&tenant, 1, seq)).collect();
    b.outbox.publish(&mut tx, first).await.unwrap();
    tx.commit().await.unwrap();

    // Let exactly two batches commit; the third writes its rows and then waits at the gate, mid-transaction.
    let gate = Arc::new(Gate::new(2));
    let crashed = tokio::spawn(
        b.consumer("resumable", Some(gate.clone()))
            .run(b.platform.shutdown.clone()),
    );
    // Batches run one after another, so once the third has reached the gate the second has committed.
    eventually(
        Duration::from_secs(20),
        "a third batch at the gate",
        || async { (gate.arrived.load(Ordering::SeqCst) == 3).then_some(()) },
    )
    .await;
    let before_crash = consumer_position(&b.pool, "resumable").await.unwrap();
    assert!(before_crash > 0, "two batches committed");
    assert!(
        before_crash < 1000,
        "the consumer is mid-stream when it dies"
    );
    crashed.abort();
    assert!(crashed.await.unwrap_err().is_cancelled());
    assert_eq!(
        consumer_position(&b.pool, "resumable").await.unwrap(),
        before_crash,
        "the interrupted batch committed nothing"
    );
    assert_eq!(
        b.seen().await.len() as i64,
        before_crash,
        "its rows were rolled back"
    );

    // More events arrive while the consumer is down.
    let mut tx = b.pool.begin().await.unwrap();
    let more: Vec<NewEvent> = (1000..1050).map(|seq| event(&tenant, 1, seq)).collect();
    b.outbox.publish(&mut tx, more).await.unwrap();
    tx.commit().await.unwrap();

    let restarted = tokio::spawn(
        b.consumer("resumable", None)
            .run(b.platform.shutdown.clone()),
    );
    let seen = eventually(Duration::from_secs(20), "all 1050 events", || async {
        let seen = b.seen().await;
        (seen.len() >= 1050).then_some(seen)
    })
    .await;
    let seqs: Vec<i32> = seen.iter().map(|e| e.2).collect();
    assert_eq!(
        seqs,
        (0..1050).collect::<Vec<_>>(),
        "every event once, in order"
    );
    b.platform.shutdown.trigger();
    restarted.await.unwrap();
}

#[tokio::test]
async fn watchers_see_only_the_tenants_their_token_names() {
    let b = backbone().await;
    let acme = TenantId::parse("acme").unwrap();
    let globex = TenantId::parse("globex").unwrap();
    let mut tx = b.pool.begin().await.unwrap();
    b.outbox
        .publish(
            &mut tx,
            vec![event(&acme, 1, 0), event(&globex, 2, 0), event(&acme, 1, 1)],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut client = tonic::client::Grpc::new(b.server.channel());
    let watch = |token: String, tenants: Vec<String>| {
        let mut request = boomerang_testkit::authed(
            &token,
            WatchEventsRequest {
                after_position: 0,
                tenants,
                type_prefixes: vec![],
            },
        );
        request.set_timeout(Duration::from_secs(5));
        request
    };
    let codec = || tonic_prost::ProstCodec::<WatchEventsRequest, WatchEventsResponse>::default();
    let path = || http::uri::PathAndQuery::from_static(METHOD);

    client.ready().await.unwrap();
    let acme_only = b.server.token(&["acme"], &["events.watch"]);
    let mut stream = client
        .server_streaming(watch(acme_only.clone(), vec![]), path(), codec())
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.events.len(), 2);
    assert!(first.events.iter().all(|e| e.tenant == "acme"));

    client.ready().await.unwrap();
    let denied = client
        .server_streaming(watch(acme_only, vec!["globex".into()]), path(), codec())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    client.ready().await.unwrap();
    let no_scope = b.server.token(&["acme"], &["ingestion.read"]);
    let denied = client
        .server_streaming(watch(no_scope, vec![]), path(), codec())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // A filter Postgres could not take is refused up front, each field named, rather than ending the stream later
    // with UNAVAILABLE (which tells the watcher to retry).
    client.ready().await.unwrap();
    let mut bad = watch(b.server.token(&["acme"], &["events.watch"]), vec![]);
    bad.get_mut().after_position = -1;
    bad.get_mut().type_prefixes = vec!["order.".into(), "order\0".into()];
    let refused = client
        .server_streaming(bad, path(), codec())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    let fields: Vec<String> = refused
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["after_position", "type_prefixes[1]"]);
}
