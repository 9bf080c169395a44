//! The Import stream: chunks answered in order, atomic chunks ending the stream.

use boomerang_proto::ingestion as pb;
use boomerang_proto::ingestion::ItemStatus::{Accepted, Duplicate, Invalid};
use futures::StreamExt;

use crate::*;

fn order(id: &str) -> pb::Order {
    pb::Order {
        order_id: id.into(),
        customer: Some(external("C-1")),
        channel: pb::Channel::App as i32,
        place_time: days_ago(2),
        status: pb::OrderStatus::PartiallyPaid as i32,
        amount: eur(100),
        ..Default::default()
    }
}

#[tokio::test]
async fn chunks_are_answered_in_order_with_a_result_per_item() {
    let app = spawn().await;
    let chunks = vec![
        pb::ImportRequest {
            parent: PARENT.into(),
            mode: pb::BatchMode::Partial as i32,
            chunk_id: 1,
            customers: vec![record(vec![external("C-1"), email("c1@example.com")])],
            ..Default::default()
        },
        pb::ImportRequest {
            parent: PARENT.into(),
            mode: pb::BatchMode::Partial as i32,
            chunk_id: 2,
            orders: vec![order("A-1"), order(""), order("A-1")],
            ..Default::default()
        },
    ];
    let responses: Vec<pb::ImportResponse> = app
        .client()
        .import(app.req(futures::stream::iter(chunks)))
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(
        responses.iter().map(|r| r.chunk_id).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(statuses(&responses[0].results), [Accepted]);
    assert_eq!(
        statuses(&responses[1].results),
        [Accepted, Invalid, Duplicate]
    );
    assert_eq!(
        responses[1].results[0].resource,
        responses[0].results[0].resource
    );
}

#[tokio::test]
async fn an_invalid_atomic_chunk_ends_the_stream_and_stores_nothing_of_it() {
    let app = spawn().await;
    let chunks = vec![
        pb::ImportRequest {
            parent: PARENT.into(),
            chunk_id: 1,
            orders: vec![order("A-1")],
            ..Default::default()
        },
        pb::ImportRequest {
            parent: PARENT.into(),
            chunk_id: 2,
            orders: vec![order("A-2"), order("")],
            ..Default::default()
        },
        pb::ImportRequest {
            parent: PARENT.into(),
            chunk_id: 3,
            orders: vec![order("A-3")],
            ..Default::default()
        },
    ];
    let mut stream = app
        .client()
        .import(app.req(futures::stream::iter(chunks)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.next().await.unwrap().unwrap().chunk_id, 1);
    let status = stream.next().await.unwrap().unwrap_err();
    assert_eq!(violated_fields(&status), ["orders[1].order_id"]);
    assert!(stream.next().await.is_none());
    let stored: Vec<String> = sqlx::query_scalar("SELECT order_id FROM orders ORDER BY order_id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, ["A-1"]);

    let mixed = pb::ImportRequest {
        parent: PARENT.into(),
        customers: vec![record(vec![external("C-9")])],
        orders: vec![order("A-9")],
        ..Default::default()
    };
    let status = app
        .client()
        .import(app.req(futures::stream::iter(vec![mixed])))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["customers"]);
}
