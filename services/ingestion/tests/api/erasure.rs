use boomerang_proto::ingestion as pb;
use boomerang_proto::ingestion::ItemStatus::{Accepted, Refused};

use crate::*;

#[tokio::test]
async fn erasure_removes_personal_data_keeps_anonymous_revenue_and_refuses_the_person_back() {
    let app = spawn().await;
    let mut client = app.client();
    let mut ada = record(vec![email("ada@example.com"), external("C-1")]);
    ada.given_name = "Ada".into();
    let created = client
        .upsert_customers(app.req(pb::UpsertCustomersRequest {
            parent: PARENT.into(),
            customers: vec![ada.clone()],
            mode: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    let name = created.results[0].resource.clone();
    client
        .ingest_orders(app.req(pb::IngestOrdersRequest {
            parent: PARENT.into(),
            orders: vec![pb::Order {
                order_id: "A-1".into(),
                customer: Some(external("C-1")),
                channel: pb::Channel::Web as i32,
                place_time: days_ago(4),
                status: pb::OrderStatus::Paid as i32,
                amount: eur(2500),
                ..Default::default()
            }],
            mode: 0,
        }))
        .await
        .unwrap();

    let erased = client
        .erase_customer(app.req(pb::EraseCustomerRequest { name: name.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.erased_customers, vec![name.clone()]);
    assert_eq!(erased.suppressed_identifiers, 2);
    let gone = client
        .get_customer(app.req(pb::GetCustomerRequest { name: name.clone() }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    assert_eq!(app.count("SELECT count(*) FROM identifiers").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM customers").await, 0);
    assert_eq!(
        app.count("SELECT sum(amount_minor)::bigint FROM orders WHERE customer_id IS NULL")
            .await,
        2500,
        "revenue stays, without a person"
    );
    let found =
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM merges WHERE via_value LIKE '%ada%'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(found, 0);

    // Erasing again is harmless.
    let again = client
        .erase_customer(app.req(pb::EraseCustomerRequest { name: name.clone() }))
        .await
        .unwrap();
    assert_eq!(again.into_inner().erased_customers, [name]);

    // The person comes back through another feed: refused, whole batch in atomic mode, item by item in partial.
    let status = client
        .upsert_customers(app.req(pb::UpsertCustomersRequest {
            parent: PARENT.into(),
            customers: vec![record(vec![email("ADA@example.com")])],
            mode: 0,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let partial = client
        .upsert_customers(app.req(pb::UpsertCustomersRequest {
            parent: PARENT.into(),
            customers: vec![ada, record(vec![email("grace@example.com")])],
            mode: pb::BatchMode::Partial as i32,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&partial.results), [Refused, Accepted]);
    let orders = client
        .ingest_orders(app.req(pb::IngestOrdersRequest {
            parent: PARENT.into(),
            orders: vec![pb::Order {
                order_id: "A-2".into(),
                customer: Some(external("C-1")),
                channel: pb::Channel::Web as i32,
                place_time: days_ago(1),
                status: pb::OrderStatus::Paid as i32,
                amount: eur(100),
                ..Default::default()
            }],
            mode: pb::BatchMode::Partial as i32,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&orders.results), [Refused]);
    assert_eq!(
        app.count("SELECT count(*) FROM customers").await,
        1,
        "only grace"
    );

    let events = app.events("customer.erased", 1).await;
    let payload: pb::CustomerErased = boomerang_events::decode_payload(&events[0]).unwrap();
    assert_eq!(payload.customer_ids.len(), 1);
}

#[tokio::test]
async fn erasing_needs_its_own_scope_and_a_valid_name() {
    let app = spawn().await;
    let writer = app
        .server
        .token(&[TENANT], &["ingestion.write", "ingestion.read"]);
    let status = app
        .client()
        .erase_customer(boomerang_testkit::authed(
            &writer,
            pb::EraseCustomerRequest {
                name: "tenants/acme/customers/1".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    let status = app
        .client()
        .erase_customer(app.req(pb::EraseCustomerRequest {
            name: "acme/1".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["name"]);
    let status = app
        .client()
        .erase_customer(app.req(pb::EraseCustomerRequest {
            name: "tenants/acme/customers/77".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
}
