use boomerang_proto::ingestion as pb;
use boomerang_proto::ingestion::IdentifierKind as Kind;
use boomerang_proto::ingestion::ItemStatus::{Accepted, Duplicate, Invalid};

use crate::*;

fn upsert(records: Vec<pb::CustomerRecord>, mode: pb::BatchMode) -> pb::UpsertCustomersRequest {
    pb::UpsertCustomersRequest {
        parent: PARENT.into(),
        customers: records,
        mode: mode as i32,
    }
}

#[tokio::test]
async fn a_customer_reads_back_with_normalised_identifiers_and_replays_are_duplicates() {
    let app = spawn().await;
    let mut client = app.client();
    let mut ada = record(vec![
        email(" Ada.Lovelace@Example.com "),
        identifier(Kind::Phone, "06 12 34 56 78"),
        identifier(Kind::LoyaltyCard, "L-100"),
    ]);
    ada.given_name = "Ada".into();
    ada.country = "FR".into();
    ada.birth_date = "1990-12-10".into();
    let response = client
        .upsert_customers(app.req(upsert(vec![ada.clone()], pb::BatchMode::Atomic)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&response.results), [Accepted]);
    let name = response.results[0].resource.clone();

    let customer = client
        .get_customer(app.req(pb::GetCustomerRequest { name: name.clone() }))
        .await
        .unwrap()
        .into_inner();
    let values: Vec<&str> = customer
        .identifiers
        .iter()
        .map(|i| i.value.as_str())
        .collect();
    assert_eq!(
        values,
        ["ada.lovelace@example.com", "+33612345678", "L-100"]
    );
    assert_eq!(
        (customer.given_name.as_str(), customer.birth_date.as_str()),
        ("Ada", "1990-12-10")
    );

    // The same phone written another way finds the same person.
    let found = client
        .lookup_customer(app.req(pb::LookupCustomerRequest {
            parent: PARENT.into(),
            identifier: Some(identifier(Kind::Phone, "+33 6 12 34 56 78")),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.name, name);

    let replay = client
        .upsert_customers(app.req(upsert(vec![ada], pb::BatchMode::Atomic)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&replay.results), [Duplicate]);
    assert_eq!(replay.results[0].resource, name);
    assert_eq!(app.count("SELECT count(*) FROM customers").await, 1);
}

#[tokio::test]
async fn store_and_web_customers_sharing_an_email_merge_and_their_orders_follow() {
    let app = spawn().await;
    let mut client = app.client();
    let till = identifier(Kind::PosCustomer, "till-42");
    let web = identifier(Kind::WebAccount, "web-7");
    let first = client
        .upsert_customers(app.req(upsert(
            vec![
                record(vec![till.clone()]),
                record(vec![web.clone(), email("ada@example.com")]),
            ],
            pb::BatchMode::Atomic,
        )))
        .await
        .unwrap()
        .into_inner();
    let (store_customer, web_customer) = (
        first.results[0].resource.clone(),
        first.results[1].resource.clone(),
    );
    assert_ne!(store_customer, web_customer);
    client
        .ingest_orders(app.req(pb::IngestOrdersRequest {
            parent: PARENT.into(),
            orders: vec![pb::Order {
                order_id: "WEB-1".into(),
                customer: Some(web.clone()),
                channel: pb::Channel::Web as i32,
                place_time: days_ago(3),
                status: pb::OrderStatus::Paid as i32,
                amount: eur(4990),
                ..Default::default()
            }],
            mode: 0,
        }))
        .await
        .unwrap();

    // The till learns the email: both are one person, and the store customer (the older) survives.
    let merged = client
        .upsert_customers(app.req(upsert(
            vec![record(vec![till, email("ADA@example.com")])],
            pb::BatchMode::Atomic,
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&merged.results), [Accepted]);
    assert_eq!(merged.results[0].resource, store_customer);

    let via_old_name = client
        .get_customer(app.req(pb::GetCustomerRequest {
            name: web_customer.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        via_old_name.name, store_customer,
        "a merged customer's name resolves to the survivor"
    );
    assert_eq!(via_old_name.identifiers.len(), 3);
    assert_eq!(via_old_name.merges.len(), 1);
    assert_eq!(via_old_name.merges[0].merged_customer, web_customer);
    assert!(
        via_old_name.merges[0]
            .reason
            .contains("email ada@example.com"),
        "{}",
        via_old_name.merges[0].reason
    );

    let survivor_id: i64 = store_customer.rsplit('/').next().unwrap().parse().unwrap();
    let order = client
        .update_order_status(app.req(pb::UpdateOrderStatusRequest {
            parent: PARENT.into(),
            order_id: "WEB-1".into(),
            status: pb::OrderStatus::Refunded as i32,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        order.customer_name, store_customer,
        "the web order now belongs to the survivor"
    );
    let events = app.events("order.", 2).await;
    let refund: pb::OrdersUpserted = boomerang_events::decode_payload(&events[1]).unwrap();
    assert_eq!(
        refund.orders[0].customer_id, survivor_id,
        "and its events name the survivor"
    );

    // The web account's owner was cached when WEB-1 arrived; the merge voids that, so a new order lands on the
    // survivor.
    let next = client
        .ingest_orders(app.req(pb::IngestOrdersRequest {
            parent: PARENT.into(),
            orders: vec![pb::Order {
                order_id: "WEB-2".into(),
                customer: Some(web.clone()),
                channel: pb::Channel::Web as i32,
                place_time: days_ago(1),
                status: pb::OrderStatus::Paid as i32,
                amount: eur(1990),
                ..Default::default()
            }],
            mode: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.results[0].resource, store_customer);

    let events = app.events("customer.merged", 1).await;
    let payload: pb::CustomersMerged = boomerang_events::decode_payload(&events[0]).unwrap();
    assert_eq!(payload.merges[0].survivor_customer_id, survivor_id);
    assert_eq!(payload.merges[0].via_kind(), Kind::Email);
}

#[tokio::test]
async fn conflicting_web_accounts_are_reported_not_merged_and_replays_do_not_repeat_them() {
    let app = spawn().await;
    let mut client = app.client();
    client
        .upsert_customers(app.req(upsert(
            vec![
                record(vec![identifier(Kind::WebAccount, "w-1")]),
                record(vec![
                    identifier(Kind::WebAccount, "w-2"),
                    email("shared@example.com"),
                ]),
            ],
            pb::BatchMode::Atomic,
        )))
        .await
        .unwrap();
    let linking = record(vec![
        identifier(Kind::WebAccount, "w-1"),
        email("shared@example.com"),
    ]);
    let response = client
        .upsert_customers(app.req(upsert(vec![linking.clone()], pb::BatchMode::Atomic)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        statuses(&response.results),
        [Accepted],
        "a new conflict is news"
    );
    let conflict = &response.results[0].conflicts[0];
    assert_eq!(
        conflict.identifier.as_ref().unwrap().value,
        "shared@example.com"
    );
    assert_eq!(conflict.existing.as_ref().unwrap().value, "w-1");
    assert!(!conflict.other_customer.is_empty());
    assert_eq!(app.count("SELECT count(*) FROM merges").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM customers WHERE merged_into IS NULL")
            .await,
        2
    );

    let replay = client
        .upsert_customers(app.req(upsert(vec![linking], pb::BatchMode::Atomic)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&replay.results), [Duplicate]);
    assert_eq!(replay.results[0].conflicts[0].name, conflict.name);

    let listed = client
        .list_identity_conflicts(app.req(pb::ListIdentityConflictsRequest {
            parent: PARENT.into(),
            page_size: 10,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.conflicts.len(), 1);
    assert_eq!(listed.conflicts[0].name, conflict.name);
}

#[tokio::test]
async fn an_atomic_batch_with_one_bad_record_stores_nothing_and_names_every_bad_field() {
    let app = spawn().await;
    let mut client = app.client();
    let mut bad = record(vec![
        email("not-an-email"),
        identifier(Kind::Unspecified, "x"),
    ]);
    bad.birth_date = "31/12/1990".into();
    let status = client
        .upsert_customers(app.req(upsert(
            vec![record(vec![email("good@example.com")]), bad.clone()],
            pb::BatchMode::Atomic,
        )))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "customers[1].birth_date",
            "customers[1].identifiers[0].value",
            "customers[1].identifiers[1].kind"
        ]
    );
    assert_eq!(app.count("SELECT count(*) FROM customers").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 0);

    let partial = client
        .upsert_customers(app.req(upsert(
            vec![record(vec![email("good@example.com")]), bad],
            pb::BatchMode::Partial,
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&partial.results), [Accepted, Invalid]);
    assert_eq!(partial.results[1].violations.len(), 3);
    assert_eq!(partial.summary.unwrap().invalid, 1);
    assert_eq!(app.count("SELECT count(*) FROM customers").await, 1);
}

#[tokio::test]
async fn malformed_reads_are_invalid_and_unknown_customers_are_not_found() {
    let app = spawn().await;
    let mut client = app.client();
    for name in [
        "customers/1",
        "tenants/acme/customers/x",
        "tenants/acme/customers/-4",
        "",
    ] {
        let status = client
            .get_customer(app.req(pb::GetCustomerRequest { name: name.into() }))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), ["name"], "{name:?}");
    }
    let status = client
        .get_customer(app.req(pb::GetCustomerRequest {
            name: "tenants/acme/customers/999".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status = client
        .lookup_customer(app.req(pb::LookupCustomerRequest {
            parent: PARENT.into(),
            identifier: Some(identifier(Kind::Phone, "12")),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["identifier.value"]);
    let status = client
        .list_identity_conflicts(app.req(pb::ListIdentityConflictsRequest {
            parent: PARENT.into(),
            page_size: -1,
            page_token: "garbage".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["page_size", "page_token"]);
}

#[tokio::test]
async fn over_size_batches_are_refused_with_the_limit() {
    let app = spawn().await;
    let records: Vec<pb::CustomerRecord> = (0..5001)
        .map(|i| record(vec![external(&format!("C{i}"))]))
        .collect();
    let status = app
        .client()
        .upsert_customers(app.req(upsert(records, pb::BatchMode::Partial)))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["customers"]);
    assert!(
        status.message().contains("at most 5000"),
        "{}",
        status.message()
    );
    assert_eq!(app.count("SELECT count(*) FROM customers").await, 0);
}
