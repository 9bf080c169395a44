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

#[tokio::test]
async fn importing_a_csv_file_twice_stores_it_once_and_lists_rejected_rows_by_line() {
    use boomerang_ingestion::import::{Format, ImportOptions, ItemKind, import};

    let app = spawn().await;
    let dir = std::env::temp_dir().join(boomerang_testkit::unique_name("import"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("orders.csv");
    let mut csv = String::from("order_id,customer_id,placed_at,amount,currency,status,channel\n");
    for i in 0..250 {
        csv.push_str(&format!(
            "A-{i},C-{},2024-0{}-1{},{}.{:02},EUR,paid,store\n",
            i % 40,
            1 + i % 9,
            i % 10,
            10 + i,
            i % 100
        ));
    }
    csv.push_str("A-bad,C-1,2024-13-01,10.00,EUR,paid,store\n");
    csv.push_str("A-250,C-1,2024-03-01,10.00,EUR,paid,store,extra\n");
    csv.push_str("A-1,C-1,2024-02-11,11.01,EUR,cancelled,store\n");
    std::fs::write(&file, csv).unwrap();
    let options = ImportOptions {
        kind: ItemKind::Orders,
        file: file.clone(),
        tenant: boomerang_auth::TenantId::parse(TENANT).unwrap(),
        format: Format::of(&file),
        customer_column: Default::default(),
        chunk_size: 500,
        parallel: 3,
        rejects: dir.join("orders.rejects.csv"),
        show_progress: false,
    };

    let first = import(app.server.channel(), &app.token, options.clone())
        .await
        .unwrap();
    assert_eq!(
        (first.rows, first.accepted, first.invalid),
        (253, 251, 2),
        "{first}"
    );
    let rejects = std::fs::read_to_string(&options.rejects).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines[0], "line,reason,record");
    assert!(
        lines[1].starts_with("252,") && lines[1].contains("neither RFC 3339"),
        "{rejects}"
    );
    assert!(
        lines[2].starts_with("253,") && lines[2].contains("malformed csv"),
        "{rejects}"
    );
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 250);
    let cancelled: i16 = sqlx::query_scalar("SELECT status FROM orders WHERE order_id = 'A-1'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(
        cancelled,
        pb::OrderStatus::Cancelled as i16,
        "a later row for the same order wins"
    );
    assert_eq!(app.count("SELECT count(*) FROM customers").await, 40);

    // Re-running replays the file in order: A-1 goes through paid and back to cancelled (its two rows are
    // accepted again), every other row is a duplicate, and nothing is stored twice.
    let again = import(app.server.channel(), &app.token, options)
        .await
        .unwrap();
    assert_eq!(
        (again.accepted, again.duplicates, again.invalid),
        (2, 249, 2),
        "{again}"
    );
    assert_eq!(app.count("SELECT count(*) FROM orders").await, 250);
    assert_eq!(
        app.count("SELECT status::bigint FROM orders WHERE order_id = 'A-1'")
            .await,
        4
    );
    std::fs::remove_dir_all(dir).unwrap();
}
