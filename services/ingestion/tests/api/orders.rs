use boomerang_proto::ingestion as pb;
use boomerang_proto::ingestion::ItemStatus::{Accepted, Duplicate, Invalid};

use crate::*;

fn order(id: &str, customer: &str, minor_units: i64) -> pb::Order {
    pb::Order {
        order_id: id.into(),
        customer: Some(external(customer)),
        channel: pb::Channel::Store as i32,
        store: "lyon-2".into(),
        place_time: days_ago(10),
        status: pb::OrderStatus::Paid as i32,
        amount: eur(minor_units),
        lines: vec![],
        customer_name: String::new(),
    }
}

fn ingest(orders: Vec<pb::Order>, mode: pb::BatchMode) -> pb::IngestOrdersRequest {
    pb::IngestOrdersRequest {
        parent: PARENT.into(),
        orders,
        mode: mode as i32,
    }
}

#[tokio::test]
async fn orders_are_idempotent_on_their_id_and_attach_to_resolved_customers() {
    let app = spawn().await;
    let mut client = app.client();
    let batch = vec![
        order("A-1", "C-1", 2933),
        order("A-2", "C-1", 1000),
        order("A-3", "C-2", 500),
    ];
    let first = client
        .ingest_orders(app.req(ingest(batch.clone(), pb::BatchMode::Atomic)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&first.results), [Accepted, Accepted, Accepted]);
    assert_eq!(
        first.results[0].resource, first.results[1].resource,
        "one customer for C-1"
    );
    assert_ne!(first.results[0].resource, first.results[2].resource);
    assert_eq!(
        app.count("SELECT count(*) FROM customers").await,
        2,
        "customers created for unknown ids"
    );

    let replay = client
        .ingest_orders(app.req(ingest(batch, pb::BatchMode::Atomic)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&replay.results), [Duplicate, Duplicate, Duplicate]);
    assert_eq!(replay.summary.unwrap().duplicates, 3);
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 3);
    assert_eq!(
        app.count("SELECT sum(amount_minor)::bigint FROM orders")
            .await,
        4433,
        "nothing counted twice"
    );

    let events = app.events("order.", 1).await;
    let payload: pb::OrdersUpserted = boomerang_events::decode_payload(&events[0]).unwrap();
    assert_eq!(payload.orders.len(), 3, "one event carries the whole batch");
    assert_eq!(events.len(), 1, "the replay published nothing");
}

#[tokio::test]
async fn a_cancellation_updates_the_order_and_publishes_the_previous_status() {
    let app = spawn().await;
    let mut client = app.client();
    client
        .ingest_orders(app.req(ingest(
            vec![order("A-1", "C-1", 2933)],
            pb::BatchMode::Atomic,
        )))
        .await
        .unwrap();
    let mut cancelled = order("A-1", "C-1", 2933);
    cancelled.status = pb::OrderStatus::Cancelled as i32;
    let response = client
        .ingest_orders(app.req(ingest(vec![cancelled], pb::BatchMode::Atomic)))
        .await
        .unwrap();
    assert_eq!(statuses(&response.into_inner().results), [Accepted]);

    let refunded = client
        .update_order_status(app.req(pb::UpdateOrderStatusRequest {
            parent: PARENT.into(),
            order_id: "A-1".into(),
            status: pb::OrderStatus::Refunded as i32,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(refunded.status(), pb::OrderStatus::Refunded);
    assert!(
        refunded
            .customer_name
            .starts_with("tenants/acme/customers/")
    );

    let events = app.events("order.", 3).await;
    let changes: Vec<(pb::OrderStatus, pb::OrderStatus)> = events
        .iter()
        .map(|e| {
            let payload: pb::OrdersUpserted = boomerang_events::decode_payload(e).unwrap();
            (
                payload.orders[0].status(),
                payload.orders[0].previous_status(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (pb::OrderStatus::Paid, pb::OrderStatus::Unspecified),
            (pb::OrderStatus::Cancelled, pb::OrderStatus::Paid),
            (pb::OrderStatus::Refunded, pb::OrderStatus::Cancelled),
        ]
    );

    // Setting the same status again changes nothing and publishes nothing.
    client
        .update_order_status(app.req(pb::UpdateOrderStatusRequest {
            parent: PARENT.into(),
            order_id: "A-1".into(),
            status: pb::OrderStatus::Refunded as i32,
        }))
        .await
        .unwrap();
    assert_eq!(
        app.count("SELECT count(*) FROM outbox WHERE event_type = 'order.upserted'")
            .await,
        3
    );
    let missing = client
        .update_order_status(app.req(pb::UpdateOrderStatusRequest {
            parent: PARENT.into(),
            order_id: "NOPE".into(),
            status: pb::OrderStatus::Refunded as i32,
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let invalid = client
        .update_order_status(app.req(pb::UpdateOrderStatusRequest {
            parent: PARENT.into(),
            order_id: String::new(),
            status: 0,
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&invalid), ["order_id", "status"]);
}

#[tokio::test]
async fn lines_are_stored_and_a_change_of_lines_is_a_change() {
    let app = spawn().await;
    let mut client = app.client();
    let mut with_lines = order("A-1", "C-1", 3000);
    with_lines.lines = vec![pb::OrderLine {
        sku: "SKU-1".into(),
        category: "shoes".into(),
        quantity: 2,
        unit_price: eur(1500),
    }];
    client
        .ingest_orders(app.req(ingest(vec![with_lines.clone()], pb::BatchMode::Atomic)))
        .await
        .unwrap();
    assert_eq!(app.count("SELECT count(*) FROM order_lines").await, 1);
    with_lines.lines[0].quantity = 1;
    with_lines.lines.push(pb::OrderLine {
        sku: "SKU-2".into(),
        category: "bags".into(),
        quantity: 1,
        unit_price: eur(1500),
    });
    let response = client
        .ingest_orders(app.req(ingest(vec![with_lines], pb::BatchMode::Atomic)))
        .await
        .unwrap();
    assert_eq!(statuses(&response.into_inner().results), [Accepted]);
    assert_eq!(app.count("SELECT count(*) FROM order_lines").await, 2);
    assert_eq!(
        app.count("SELECT sum(quantity)::bigint FROM order_lines")
            .await,
        2
    );
}

#[tokio::test]
async fn bad_orders_are_rejected_whole_in_atomic_mode_and_one_by_one_in_partial_mode() {
    let app = spawn().await;
    let mut client = app.client();
    let mut bad_currency = order("A-2", "C-1", 100);
    bad_currency.amount.as_mut().unwrap().currency_code = "EURO".into();
    let mut future = order("A-3", "C-1", 100);
    future.place_time = days_ago(-30);
    let mut conflicting_repeat = order("A-1", "C-1", 999);
    conflicting_repeat.store = "paris-1".into();
    let batch = vec![
        order("A-1", "C-1", 100),
        bad_currency,
        future,
        conflicting_repeat,
        order("A-1", "C-1", 100),
    ];

    let status = client
        .ingest_orders(app.req(ingest(batch.clone(), pb::BatchMode::Atomic)))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "orders[1].amount.currency_code",
            "orders[2].place_time",
            "orders[3]"
        ]
    );
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM customers").await,
        0,
        "not even the customer was created"
    );

    let partial = client
        .ingest_orders(app.req(ingest(batch, pb::BatchMode::Partial)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        statuses(&partial.results),
        [Accepted, Invalid, Invalid, Invalid, Duplicate]
    );
    assert_eq!(
        partial.results[3].violations[0].description,
        "repeats item 0 of this batch with different content"
    );
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 1);
}

#[tokio::test]
async fn over_size_batches_and_messages_are_refused_clearly() {
    let app = spawn_with(|platform| platform.config.server.max_message_bytes = 64 * 1024).await;
    let mut client = app.client();
    let too_many: Vec<pb::Order> = (0..5001)
        .map(|i| order(&format!("A-{i}"), "C-1", 100))
        .collect();
    let status = client
        .ingest_orders(app.req(ingest(too_many, pb::BatchMode::Partial)))
        .await
        .unwrap_err();
    // 5001 orders exceed the 64 KiB message limit before the item limit is even checked.
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("message length too large"),
        "{}",
        status.message()
    );

    let app = spawn().await;
    let too_many: Vec<pb::Order> = (0..5001)
        .map(|i| order(&format!("A-{i}"), "C-1", 100))
        .collect();
    let status = app
        .client()
        .ingest_orders(app.req(ingest(too_many, pb::BatchMode::Partial)))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["orders"]);
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 0);
}
