//! Ingestion's events, consumed by a separate consumer over the real backbone: the WatchEvents stream, a durable
//! cursor in the consumer's own schema, effects applied exactly once.

use std::time::Duration;

use boomerang_events::{
    Consumer, ConsumerConfig, EventHandler, EventSource, HandlerError, decode_payload,
};
use boomerang_proto::events::Event;
use boomerang_proto::ingestion as pb;
use boomerang_proto::ingestion::ingestion_service_client::IngestionServiceClient;
use boomerang_testkit::{TestDb, TestRedis, TestServer, authed, eventually};
use sqlx::{PgConnection, PgPool};

/// A consumer that projects ingestion's events into its own schema: how many orders and how much revenue each
/// customer has, and which customers were erased. Revenue is per order id, so a redelivered event cannot count twice.
struct Projection;

impl EventHandler for Projection {
    type AfterCommit = ();

    async fn handle(&self, tx: &mut PgConnection, events: &[Event]) -> Result<(), HandlerError> {
        for event in events {
            sqlx::query("INSERT INTO seen_events (event_id, type, tenant) VALUES ($1, $2, $3)")
                .bind(&event.id)
                .bind(&event.r#type)
                .bind(&event.tenant)
                .execute(&mut *tx)
                .await?;
            match event.r#type.as_str() {
                "order.upserted" => {
                    let payload: pb::OrdersUpserted = decode_payload(event)?;
                    for order in payload.orders {
                        let paid = matches!(
                            order.status(),
                            pb::OrderStatus::Paid | pb::OrderStatus::PartiallyPaid
                        );
                        sqlx::query(
                            "INSERT INTO order_facts (order_id, customer_id, revenue) VALUES ($1, $2, $3)
                             ON CONFLICT (order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id,
                                                                  revenue = EXCLUDED.revenue",
                        )
                        .bind(&order.order_id)
                        .bind(order.customer_id)
                        .bind(if paid { order.amount.map_or(0, |a| a.minor_units) } else { 0 })
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                "customer.merged" => {
                    let payload: pb::CustomersMerged = decode_payload(event)?;
                    for merge in payload.merges {
                        sqlx::query(
                            "UPDATE order_facts SET customer_id = $1 WHERE customer_id = $2",
                        )
                        .bind(merge.survivor_customer_id)
                        .bind(merge.merged_customer_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                "customer.erased" => {
                    let payload: pb::CustomerErased = decode_payload(event)?;
                    sqlx::query(
                        "UPDATE order_facts SET customer_id = NULL WHERE customer_id = ANY($1)",
                    )
                    .bind(&payload.customer_ids)
                    .execute(&mut *tx)
                    .await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn after_commit(&self, (): ()) {}
}

fn identifier(kind: pb::IdentifierKind, value: &str) -> pb::Identifier {
    pb::Identifier {
        kind: kind as i32,
        value: value.into(),
        namespace: String::new(),
    }
}

fn external(value: &str) -> pb::Identifier {
    identifier(pb::IdentifierKind::External, value)
}

fn email(value: &str) -> pb::Identifier {
    identifier(pb::IdentifierKind::Email, value)
}

fn card(value: &str) -> pb::Identifier {
    identifier(pb::IdentifierKind::LoyaltyCard, value)
}

fn order(
    id: &str,
    customer: pb::Identifier,
    minor_units: i64,
    status: pb::OrderStatus,
) -> pb::Order {
    pb::Order {
        order_id: id.into(),
        customer: Some(customer),
        channel: pb::Channel::Web as i32,
        place_time: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() - 86_400,
            nanos: 0,
        }),
        status: status as i32,
        amount: Some(pb::Money {
            currency_code: "EUR".into(),
            minor_units,
        }),
        ..Default::default()
    }
}

async fn projection_pool(db: &TestDb) -> PgPool {
    let pool = db.pool("projection");
    boomerang_service_kit::db::ensure_schema(&pool, "projection")
        .await
        .unwrap();
    boomerang_events::migrate(&pool).await.unwrap();
    for ddl in [
        "CREATE TABLE seen_events (event_id text PRIMARY KEY, type text NOT NULL, tenant text NOT NULL)",
        "CREATE TABLE order_facts (order_id text PRIMARY KEY, customer_id bigint, revenue bigint NOT NULL)",
    ] {
        sqlx::query(ddl).execute(&pool).await.unwrap();
    }
    pool
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_sees_every_ingestion_change_once_and_in_order() {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let platform = boomerang_testkit::platform(&db, &redis);
    let ingestion_pool = boomerang_ingestion::pool(&platform).unwrap();
    boomerang_ingestion::migrate(&ingestion_pool).await.unwrap();
    let config: boomerang_ingestion::config::Section =
        boomerang_service_kit::config::load(&[boomerang_ingestion::DEFAULTS], None).unwrap();
    let server = TestServer::start(
        &platform,
        vec![boomerang_ingestion::build(&platform, &config.ingestion).unwrap()],
    )
    .await;
    let projection = projection_pool(&db).await;

    // The consumer holds a service account token: every tenant, watch only.
    let source = EventSource {
        channel: server.channel(),
        method: boomerang_ingestion::WATCH_EVENTS,
        token: server.token(&["*"], &["events.watch"]),
    };
    let consumer = Consumer::new(
        projection.clone(),
        source,
        ConsumerConfig {
            name: "projection".into(),
            tenants: vec![],
            type_prefixes: vec!["order.".into(), "customer.".into()],
        },
        Projection,
    );
    let consuming = tokio::spawn(consumer.run(platform.shutdown.clone()));

    let token = server.token(&["acme"], &["ingestion.*"]);
    let mut client = IngestionServiceClient::new(server.channel());
    let ingest = |orders: Vec<pb::Order>| pb::IngestOrdersRequest {
        parent: "tenants/acme".into(),
        orders,
        mode: 0,
    };
    // Ada buys on the web (known by email) and in store (known by loyalty card); Bob is a bystander.
    client
        .ingest_orders(authed(
            &token,
            ingest(vec![
                order(
                    "A-1",
                    email("ada@example.com"),
                    1_000,
                    pb::OrderStatus::Paid,
                ),
                order("A-2", card("L-9"), 2_000, pb::OrderStatus::Paid),
                order("A-3", card("L-9"), 4_000, pb::OrderStatus::Paid),
                order("B-1", external("C-BOB"), 500, pb::OrderStatus::Paid),
            ]),
        ))
        .await
        .unwrap();
    // A retry of the same order, and a refund.
    client
        .ingest_orders(authed(
            &token,
            ingest(vec![order(
                "A-1",
                email("ada@example.com"),
                1_000,
                pb::OrderStatus::Paid,
            )]),
        ))
        .await
        .unwrap();
    client
        .ingest_orders(authed(
            &token,
            ingest(vec![order(
                "A-3",
                card("L-9"),
                4_000,
                pb::OrderStatus::Refunded,
            )]),
        ))
        .await
        .unwrap();
    // The till learns Ada's email: the web customer and the store customer are one person.
    let merged = client
        .upsert_customers(authed(
            &token,
            pb::UpsertCustomersRequest {
                parent: "tenants/acme".into(),
                customers: vec![pb::CustomerRecord {
                    identifiers: vec![email("ada@example.com"), card("L-9")],
                    ..Default::default()
                }],
                mode: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let ada = merged.results[0].resource.clone();
    let ada_id: i64 = ada.rsplit('/').next().unwrap().parse().unwrap();

    let customer_of = |order_id: &'static str| {
        let projection = projection.clone();
        async move {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT customer_id FROM order_facts WHERE order_id = $1",
            )
            .bind(order_id)
            .fetch_optional(&projection)
            .await
            .unwrap()
            .flatten()
        }
    };
    eventually(
        Duration::from_secs(20),
        "the store orders to follow the merge",
        || async {
            (customer_of("A-2").await == Some(ada_id) && customer_of("A-3").await == Some(ada_id))
                .then_some(())
        },
    )
    .await;

    // Erasing Ada leaves her orders as anonymous revenue downstream too.
    client
        .erase_customer(authed(&token, pb::EraseCustomerRequest { name: ada }))
        .await
        .unwrap();

    let expected_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ingestion.outbox WHERE event_type LIKE 'order.%' OR event_type LIKE 'customer.%'",
    )
    .fetch_one(&ingestion_pool)
    .await
    .unwrap();
    eventually(
        Duration::from_secs(20),
        "the projection to catch up",
        || async {
            let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM seen_events")
                .fetch_one(&projection)
                .await
                .unwrap();
            (seen == expected_events).then_some(())
        },
    )
    .await;

    let facts: Vec<(String, Option<i64>, i64)> =
        sqlx::query_as("SELECT order_id, customer_id, revenue FROM order_facts ORDER BY order_id")
            .fetch_all(&projection)
            .await
            .unwrap();
    let bob: i64 =
        sqlx::query_scalar("SELECT customer_id FROM ingestion.identifiers WHERE value = 'C-BOB'")
            .fetch_one(&ingestion_pool)
            .await
            .unwrap();
    assert_eq!(
        facts,
        vec![
            ("A-1".to_owned(), None, 1_000),
            ("A-2".to_owned(), None, 2_000),
            ("A-3".to_owned(), None, 0),
            ("B-1".to_owned(), Some(bob), 500),
        ],
        "the retry counted once, the refund took A-3's revenue away, Ada is anonymous, Bob untouched"
    );
    let types: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT type FROM seen_events ORDER BY type")
            .fetch_all(&projection)
            .await
            .unwrap();
    assert_eq!(
        types,
        [
            "customer.erased",
            "customer.merged",
            "customer.upserted",
            "order.upserted"
        ]
    );

    platform.shutdown.trigger();
    consuming.await.unwrap();
}
