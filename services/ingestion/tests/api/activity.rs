//! Market transactions, engagement events and consent.

use boomerang_proto::ingestion as pb;
use boomerang_proto::ingestion::ItemStatus::{Accepted, Duplicate, Invalid, Refused};

use crate::*;

fn app_user(id: &str) -> pb::Identifier {
    pb::Identifier {
        kind: pb::IdentifierKind::Partner as i32,
        value: id.into(),
        namespace: "cashback-app".into(),
    }
}

fn spend(id: &str, user: &str, merchant: &str, minor_units: i64) -> pb::MarketTransaction {
    pb::MarketTransaction {
        transaction_id: id.into(),
        customer: Some(app_user(user)),
        merchant_id: merchant.into(),
        merchant_name: format!("{merchant} SA"),
        merchant_category: "fashion".into(),
        amount: eur(minor_units),
        occur_time: days_ago(5),
    }
}

#[tokio::test]
async fn spend_at_any_merchant_is_stored_once_per_feed_id() {
    let app = spawn().await;
    let mut client = app.client();
    let request = |transactions: Vec<pb::MarketTransaction>, mode: pb::BatchMode| {
        pb::IngestTransactionsRequest {
            parent: PARENT.into(),
            transactions,
            mode: mode as i32,
        }
    };
    let batch = vec![
        spend("T-1", "u-1", "acme", 5000),
        spend("T-2", "u-1", "rival", 7000),
        spend("T-3", "u-1", "rival", -2000),
    ];
    let first = client
        .ingest_transactions(app.req(request(batch.clone(), pb::BatchMode::Atomic)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&first.results), [Accepted, Accepted, Accepted]);
    let replay = client
        .ingest_transactions(app.req(request(batch, pb::BatchMode::Atomic)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&replay.results), [Duplicate, Duplicate, Duplicate]);
    assert_eq!(
        app.count("SELECT sum(amount_minor)::bigint FROM market_transactions")
            .await,
        10000
    );
    assert_eq!(
        app.count("SELECT count(*) FROM customers").await,
        1,
        "one app user, one customer"
    );

    let mut unknown_kind = spend("T-4", "u-1", "rival", 1);
    unknown_kind.customer.as_mut().unwrap().namespace.clear();
    let mut no_category = spend("T-5", "u-1", "rival", 1);
    no_category.merchant_category.clear();
    let status = client
        .ingest_transactions(app.req(request(
            vec![unknown_kind.clone(), no_category.clone()],
            pb::BatchMode::Atomic,
        )))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "transactions[0].customer.value",
            "transactions[1].merchant_category"
        ]
    );
    let partial = client
        .ingest_transactions(app.req(request(
            vec![unknown_kind, no_category, spend("T-6", "u-2", "acme", 100)],
            pb::BatchMode::Partial,
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&partial.results), [Invalid, Invalid, Accepted]);
    assert_eq!(
        app.count("SELECT count(*) FROM market_transactions").await,
        4
    );

    let events = app.events("transaction.", 2).await;
    let total: usize = events
        .iter()
        .map(|e| {
            boomerang_events::decode_payload::<pb::TransactionsIngested>(e)
                .unwrap()
                .transactions
                .len()
        })
        .sum();
    assert_eq!(total, 4);

    // A stored id sent again with other content is not a duplicate: transactions never change, so it is refused.
    let changed = spend("T-2", "u-1", "rival", 7500);
    let status = client
        .ingest_transactions(app.req(request(vec![changed.clone()], pb::BatchMode::Atomic)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let partial = client
        .ingest_transactions(app.req(request(
            vec![changed, spend("T-7", "u-2", "acme", 100)],
            pb::BatchMode::Partial,
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&partial.results), [Refused, Accepted]);
    assert_eq!(
        app.count("SELECT amount_minor FROM market_transactions WHERE transaction_id = 'T-2'")
            .await,
        7000
    );
}

#[tokio::test]
async fn engagement_events_are_stored_once_per_event_id() {
    let app = spawn().await;
    let mut client = app.client();
    let scan = |id: &str| pb::EngagementEvent {
        event_id: id.into(),
        customer: Some(email("ada@example.com")),
        r#type: pb::EngagementType::ProductScannedInStore as i32,
        occur_time: days_ago(1),
        source: "store-12".into(),
        properties: [("sku".to_owned(), "A-12".to_owned())].into(),
    };
    let request = |events: Vec<pb::EngagementEvent>| pb::IngestEngagementEventsRequest {
        parent: PARENT.into(),
        events,
        mode: 0,
    };
    let first = client
        .ingest_engagement_events(app.req(request(vec![scan("E-1"), scan("E-2")])))
        .await
        .unwrap();
    assert_eq!(statuses(&first.into_inner().results), [Accepted, Accepted]);
    let replay = client
        .ingest_engagement_events(app.req(request(vec![scan("E-1")])))
        .await
        .unwrap();
    assert_eq!(statuses(&replay.into_inner().results), [Duplicate]);
    let mut changed = scan("E-1");
    changed.properties.insert("sku".into(), "B-7".into());
    let refused = client
        .ingest_engagement_events(app.req(pb::IngestEngagementEventsRequest {
            mode: pb::BatchMode::Partial as i32,
            ..request(vec![changed])
        }))
        .await
        .unwrap();
    assert_eq!(statuses(&refused.into_inner().results), [Refused]);
    assert_eq!(app.count("SELECT count(*) FROM engagement_events").await, 2);
    let stored: serde_json::Value =
        sqlx::query_scalar("SELECT properties FROM engagement_events WHERE event_id = 'E-1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored["sku"], "A-12");

    let mut bad = scan("E-3");
    bad.r#type = 0;
    bad.occur_time = None;
    let status = client
        .ingest_engagement_events(app.req(request(vec![bad])))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["events[0].type", "events[0].occur_time"]
    );
    assert_eq!(app.count("SELECT count(*) FROM engagement_events").await, 2);
}

#[tokio::test]
async fn the_latest_consent_decision_wins_and_replays_are_duplicates() {
    let app = spawn().await;
    let mut client = app.client();
    let decision = |granted: bool, days: i64| pb::ConsentChange {
        customer: Some(email("ada@example.com")),
        consent: Some(pb::Consent {
            channel: pb::ConsentChannel::Email as i32,
            purpose: pb::ConsentPurpose::Marketing as i32,
            granted,
            change_time: days_ago(days),
            source: "preference-centre".into(),
        }),
    };
    let request = |changes: Vec<pb::ConsentChange>| pb::SetConsentsRequest {
        parent: PARENT.into(),
        changes,
        mode: 0,
    };
    let response = client
        .set_consents(app.req(request(vec![decision(true, 10), decision(false, 2)])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&response.results), [Accepted, Accepted]);
    // A late-arriving older decision goes into the history but does not override the newer one.
    let late = client
        .set_consents(app.req(request(vec![decision(true, 5)])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&late.results), [Accepted]);
    let replay = client
        .set_consents(app.req(request(vec![decision(false, 2)])))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&replay.results), [Duplicate]);

    let customer = client
        .get_customer(app.req(pb::GetCustomerRequest {
            name: response.results[0].resource.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(customer.consents.len(), 1);
    assert!(
        !customer.consents[0].granted,
        "the newest decision (opt-out two days ago) holds"
    );
    assert_eq!(app.count("SELECT count(*) FROM consent_history").await, 3);

    // One decision per customer, channel, purpose and time: another that says otherwise, already recorded or in the
    // same batch under another of the customer's identifiers, is refused, not dropped while reported stored.
    let flipped = client
        .set_consents(app.req(request(vec![decision(true, 2)])))
        .await
        .unwrap_err();
    assert_eq!(
        flipped.code(),
        tonic::Code::FailedPrecondition,
        "{flipped:?}"
    );
    client
        .upsert_customers(app.req(pb::UpsertCustomersRequest {
            parent: PARENT.into(),
            customers: vec![record(vec![email("ada@example.com"), external("ADA")])],
            mode: 0,
        }))
        .await
        .unwrap();
    let mut by_id = decision(false, 1);
    by_id.customer = Some(external("ADA"));
    let both = client
        .set_consents(app.req(pb::SetConsentsRequest {
            mode: pb::BatchMode::Partial as i32,
            ..request(vec![decision(true, 1), by_id, decision(true, 2)])
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(statuses(&both.results), [Accepted, Refused, Refused]);
    assert_eq!(app.count("SELECT count(*) FROM consent_history").await, 4);

    let mut bad = decision(true, 1);
    bad.consent.as_mut().unwrap().purpose = 9;
    let status = client
        .set_consents(app.req(request(vec![bad])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["changes[0].consent.purpose"]);
}
