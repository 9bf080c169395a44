//! Health as Kubernetes sees it: readiness follows a service's dependencies (Postgres, Redis), liveness only the
//! process, and shutdown turns everything NOT_SERVING.

use std::time::Duration;

use boomerang_service_kit::{Probe, ServiceBundle};
use boomerang_testkit::{TestDb, TestRedis, TestServer, eventually};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn status_of(server: &TestServer, service: &str) -> Option<ServingStatus> {
    let mut health = HealthClient::new(server.channel());
    let response = health
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .ok()?;
    Some(response.into_inner().status())
}

async fn wait_for(server: &TestServer, service: &str, wanted: ServingStatus) {
    eventually(
        Duration::from_secs(10),
        &format!("{service:?} to be {wanted:?}"),
        || async { (status_of(server, service).await == Some(wanted)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn readiness_follows_postgres_and_redis_while_liveness_stays_up() {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let platform = boomerang_testkit::platform(&db, &redis);
    let postgres = platform.pg_pool("public").unwrap();
    let good_redis = redis::Client::open(boomerang_testkit::redis_url()).unwrap();
    // Nothing listens on port 1: a Redis that is down.
    let down_redis = redis::Client::open("redis://127.0.0.1:1").unwrap();

    let server = TestServer::start(
        &platform,
        vec![
            ServiceBundle::new("test.Healthy")
                .probe(Probe::Postgres(postgres.clone()))
                .probe(Probe::Redis(good_redis)),
            ServiceBundle::new("test.NeedsRedis")
                .probe(Probe::Postgres(postgres))
                .probe(Probe::Redis(down_redis)),
        ],
    )
    .await;
    wait_for(&server, "test.Healthy", ServingStatus::Serving).await;
    wait_for(&server, "test.NeedsRedis", ServingStatus::NotServing).await;
    assert_eq!(
        status_of(&server, "").await,
        Some(ServingStatus::NotServing),
        "the process is ready only when every service is"
    );
    assert_eq!(
        status_of(&server, "liveness").await,
        Some(ServingStatus::Serving)
    );
    server.stop().await;
}

#[tokio::test]
async fn a_postgres_outage_takes_readiness_down_and_back_up() {
    let db = TestDb::new().await;
    let redis = TestRedis::new();
    let platform = boomerang_testkit::platform(&db, &redis);
    let pool = platform.pg_pool("public").unwrap();
    let server = TestServer::start(
        &platform,
        vec![ServiceBundle::new("test.Db").probe(Probe::Postgres(pool.clone()))],
    )
    .await;
    wait_for(&server, "", ServingStatus::Serving).await;

    // The database goes away (its connections are cut): readiness drops, liveness does not.
    let admin = boomerang_testkit::postgres_admin_url();
    let name = db.url().rsplit('/').next().unwrap().to_owned();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut conn)
        .await
        .unwrap();
    wait_for(&server, "test.Db", ServingStatus::NotServing).await;
    assert_eq!(
        status_of(&server, "liveness").await,
        Some(ServingStatus::Serving)
    );

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    wait_for(&server, "test.Db", ServingStatus::Serving).await;
    server.stop().await;
}
