//! Authentication, tenant isolation, health and reflection.

use boomerang_proto::ingestion as pb;
use boomerang_testkit::authed;
use futures::StreamExt;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::*;

#[tokio::test]
async fn every_call_for_another_tenant_is_denied_with_the_same_words() {
    let app = spawn().await;
    let globex = app
        .server
        .token(&["globex"], &["ingestion.*", "events.watch"]);
    let created = app
        .client()
        .upsert_customers(authed(
            &globex,
            pb::UpsertCustomersRequest {
                parent: "tenants/globex".into(),
                customers: vec![record(vec![external("G-1")])],
                mode: 0,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let existing = created.results[0].resource.clone();

    // The acme token, aimed at globex: every RPC refuses.
    let mut client = app.client();
    let parent = "tenants/globex".to_owned();
    let mut refusals = vec![
        client
            .upsert_customers(app.req(pb::UpsertCustomersRequest {
                parent: parent.clone(),
                customers: vec![record(vec![external("X")])],
                mode: 0,
            }))
            .await
            .map(drop),
        client
            .get_customer(app.req(pb::GetCustomerRequest {
                name: existing.clone(),
            }))
            .await
            .map(drop),
        client
            .get_customer(app.req(pb::GetCustomerRequest {
                name: "tenants/globex/customers/999999".into(),
            }))
            .await
            .map(drop),
        client
            .lookup_customer(app.req(pb::LookupCustomerRequest {
                parent: parent.clone(),
                identifier: Some(external("G-1")),
            }))
            .await
            .map(drop),
        client
            .list_identity_conflicts(app.req(pb::ListIdentityConflictsRequest {
                parent: parent.clone(),
                page_size: 0,
                page_token: String::new(),
            }))
            .await
            .map(drop),
        client
            .ingest_orders(app.req(pb::IngestOrdersRequest {
                parent: parent.clone(),
                orders: vec![],
                mode: 0,
            }))
            .await
            .map(drop),
        client
            .update_order_status(app.req(pb::UpdateOrderStatusRequest {
                parent: parent.clone(),
                order_id: "A".into(),
                status: 4,
            }))
            .await
            .map(drop),
        client
            .ingest_transactions(app.req(pb::IngestTransactionsRequest {
                parent: parent.clone(),
                transactions: vec![],
                mode: 0,
            }))
            .await
            .map(drop),
        client
            .ingest_engagement_events(app.req(pb::IngestEngagementEventsRequest {
                parent: parent.clone(),
                events: vec![],
                mode: 0,
            }))
            .await
            .map(drop),
        client
            .set_consents(app.req(pb::SetConsentsRequest {
                parent: parent.clone(),
                changes: vec![],
                mode: 0,
            }))
            .await
            .map(drop),
        client
            .erase_customer(app.req(pb::EraseCustomerRequest {
                name: existing.clone(),
            }))
            .await
            .map(drop),
        client
            .watch_events(app.req(boomerang_proto::events::WatchEventsRequest {
                after_position: 0,
                tenants: vec!["globex".into()],
                type_prefixes: vec![],
            }))
            .await
            .map(drop),
    ];
    let import = client
        .import(app.req(futures::stream::iter(vec![pb::ImportRequest {
            parent: parent.clone(),
            customers: vec![record(vec![external("X")])],
            ..Default::default()
        }])))
        .await
        .unwrap()
        .into_inner()
        .next()
        .await
        .unwrap();
    refusals.push(import.map(drop));
    for (i, refusal) in refusals.iter().enumerate() {
        assert_eq!(
            refusal.as_ref().unwrap_err().code(),
            Code::PermissionDenied,
            "call {i}"
        );
    }
    // Whether the customer exists or not, the refusal reads the same.
    assert_eq!(
        refusals[1].as_ref().unwrap_err().message(),
        refusals[2].as_ref().unwrap_err().message()
    );
    assert_eq!(
        app.count("SELECT count(*) FROM customers").await,
        1,
        "globex's customer only"
    );
}

#[tokio::test]
async fn tenants_never_share_customers_or_events() {
    let app = spawn().await;
    let globex = app
        .server
        .token(&["globex"], &["ingestion.*", "events.watch"]);
    let mut client = app.client();
    let same_id = |parent: &str| pb::UpsertCustomersRequest {
        parent: parent.into(),
        customers: vec![record(vec![external("C-1"), email("same@example.com")])],
        mode: 0,
    };
    let acme = client
        .upsert_customers(app.req(same_id(PARENT)))
        .await
        .unwrap()
        .into_inner();
    let other = client
        .upsert_customers(authed(&globex, same_id("tenants/globex")))
        .await
        .unwrap()
        .into_inner();
    assert!(acme.results[0].resource.starts_with("tenants/acme/"));
    assert!(other.results[0].resource.starts_with("tenants/globex/"));
    assert_eq!(
        statuses(&other.results),
        [pb::ItemStatus::Accepted],
        "not a duplicate of acme's record"
    );

    let acme_events = app.events("customer.", 1).await;
    assert!(acme_events.iter().all(|e| e.tenant == TENANT));
    assert_eq!(app.count("SELECT count(*) FROM outbox").await, 2);
}

#[tokio::test]
async fn calls_need_a_valid_token_but_health_and_reflection_do_not() {
    let app = spawn().await;
    let mut client = app.client();
    let status = client
        .get_customer(tonic::Request::new(pb::GetCustomerRequest {
            name: "tenants/acme/customers/1".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .get_customer(authed(
            "not-a-token",
            pb::GetCustomerRequest {
                name: "tenants/acme/customers/1".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    let mut health = HealthClient::new(app.server.channel());
    let serving =
        boomerang_testkit::eventually(std::time::Duration::from_secs(5), "readiness", || {
            let mut health = health.clone();
            async move {
                let response = health
                    .check(HealthCheckRequest {
                        service: boomerang_ingestion::SERVICE_NAME.into(),
                    })
                    .await
                    .ok()?;
                (response.into_inner().status() == ServingStatus::Serving).then_some(())
            }
        })
        .await;
    assert_eq!(serving, ());
    let overall = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(overall.into_inner().status(), ServingStatus::Serving);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(app.server.channel());
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter(vec![ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&boomerang_ingestion::SERVICE_NAME.to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
}

#[tokio::test]
async fn shutdown_turns_health_to_not_serving_and_stops_the_server() {
    let app = spawn().await;
    let mut health = HealthClient::new(app.server.channel());
    boomerang_testkit::eventually(std::time::Duration::from_secs(5), "serving", || {
        let mut health = health.clone();
        async move {
            let status = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .ok()?;
            (status.into_inner().status() == ServingStatus::Serving).then_some(())
        }
    })
    .await;
    let addr = app.server.addr();
    app.server.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed once the server has stopped"
    );
    let _ = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
}

#[tokio::test]
async fn the_tower_stack_sheds_load_and_enforces_the_timeout() {
    let request = || pb::GetCustomerRequest {
        name: "tenants/acme/customers/1".into(),
    };

    // No call may run at once: every call is refused at once instead of queueing.
    let app = spawn_with(|platform| platform.config.server.concurrency_limit = 0).await;
    let status = app
        .client()
        .get_customer(app.req(request()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("concurrency limit"),
        "{}",
        status.message()
    );

    // A call stuck behind the tenant's identity lock (held here) gets DEADLINE_EXCEEDED once the timeout passes.
    let app = spawn_with(|platform| platform.config.server.request_timeout_ms = 300).await;
    let mut holder = app.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('ingestion.identity:acme', 0))")
        .execute(&mut *holder)
        .await
        .unwrap();
    let upsert = pb::UpsertCustomersRequest {
        parent: PARENT.into(),
        customers: vec![record(vec![email("ada@example.com")])],
        mode: 0,
    };
    let started = std::time::Instant::now();
    let status = app
        .client()
        .upsert_customers(app.req(upsert))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut *holder)
        .await
        .unwrap();
}
