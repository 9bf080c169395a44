//! Test harness for Boomerang, used by every service's tests, the integration tests and the benchmarks.
//!
//! Tests run against real Postgres and Redis (never stand-ins). Each test gets its own database, dropped when the
//! test ends, and its own Redis key prefix, deleted likewise, so tests run in parallel without seeing each other.
//! The servers are the same composition the binaries run, on port 0.
//!
//! Where to find the servers: `BOOMERANG_TEST_POSTGRES_URL` (default `postgres://root@127.0.0.1:5432/postgres`, a
//! role allowed to create databases) and `BOOMERANG_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`). The
//! project's `scripts/test` sets both, starting private instances when none are running.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use boomerang_auth::TokenKeys;
use boomerang_service_kit::config::{DEFAULTS, KitConfig, load};
use boomerang_service_kit::{Platform, ServiceBundle, Shutdown};
use sqlx::Connection;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

/// The token secret every test platform uses.
pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret!";

/// The admin URL of the test Postgres server.
pub fn postgres_admin_url() -> String {
    std::env::var("BOOMERANG_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned())
}

/// The URL of the test Redis server.
pub fn redis_url() -> String {
    std::env::var("BOOMERANG_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A name no other test (in this or another process) uses.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}_{n}_{}", std::process::id(), &random[..8])
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A database of its own for one test, dropped (with its connections) when the value is dropped.
pub struct TestDb {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let admin_url = postgres_admin_url();
        let name = unique_name("boomerang_test");
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|err| panic!("cannot reach test postgres at {admin_url}: {err}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = with_database(&admin_url, &name);
        Self {
            name,
            url,
            admin_url,
        }
    }

    /// URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A small pool on the test database whose connections work in `schema` (created by the service's migrations
    /// or by the caller).
    pub fn pool(&self, schema: &str) -> sqlx::PgPool {
        let config = boomerang_service_kit::config::PostgresConfig {
            url: self.url.clone(),
            max_connections: 4,
            acquire_timeout_ms: 5_000,
        };
        boomerang_service_kit::db::pool(&config, schema).expect("test pool")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime; a thread with its own runtime can block safely.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .map(drop)
            })
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!("could not drop test database {}: {err}", self.name);
        }
    }
}

/// A Redis key prefix of its own for one test; its keys are deleted when the value is dropped.
pub struct TestRedis {
    prefix: String,
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRedis {
    pub fn new() -> Self {
        Self {
            prefix: unique_name("bt"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let pattern = format!("{}*", self.prefix);
        let _ = std::thread::spawn(move || {
            let client = redis::Client::open(redis_url())?;
            let mut connection = client.get_connection()?;
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut connection)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(keys).exec(&mut connection)?;
            }
            Ok::<_, redis::RedisError>(())
        })
        .join();
    }
}

/// The platform configuration for a test: its own database and Redis prefix, port 0, quick shutdown.
pub fn kit_config(db: &TestDb, redis: &TestRedis) -> KitConfig {
    let mut config: KitConfig = load(&[DEFAULTS], None).expect("platform defaults");
    config.server.listen_addr = "127.0.0.1:0".parse().expect("addr");
    config.server.shutdown_delay_ms = 0;
    config.server.shutdown_grace_ms = 2_000;
    config.server.readiness_interval_ms = 200;
    config.postgres.url = db.url().to_owned();
    config.postgres.max_connections = 8;
    config.redis.url = redis_url();
    config.redis.key_prefix = redis.prefix().to_owned();
    config.auth.secret = TEST_SECRET.to_owned();
    config
}

/// A platform for a test with its own database and Redis prefix.
pub fn platform(db: &TestDb, redis: &TestRedis) -> Platform {
    Platform::new(kit_config(db, redis), Shutdown::new()).expect("test platform")
}

/// Services served on port 0 for the length of a test.
pub struct TestServer {
    addr: SocketAddr,
    channel: Channel,
    keys: Arc<TokenKeys>,
    shutdown: Shutdown,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Serves `bundles` the way the binaries do.
    pub async fn start(platform: &Platform, bundles: Vec<ServiceBundle>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let server_config = platform.config.server.clone();
        let keys = platform.keys.clone();
        let shutdown = platform.shutdown.clone();
        let task = tokio::spawn({
            let keys = keys.clone();
            let shutdown = shutdown.clone();
            async move {
                boomerang_service_kit::serve(&server_config, listener, keys, bundles, shutdown)
                    .await
                    .expect("test server");
            }
        });
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_lazy();
        Self {
            addr,
            channel,
            keys,
            shutdown,
            task: Some(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A channel to the server, for generated clients.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A token for `tenants` (or `*`) with `scopes`.
    pub fn token(&self, tenants: &[&str], scopes: &[&str]) -> String {
        let tenants: Vec<String> = tenants.iter().map(|t| t.to_string()).collect();
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.keys
            .mint("test", &tenants, &scopes, Duration::from_secs(3600))
            .expect("mint test token")
    }

    /// Stops the server the way SIGTERM would, and waits until it has.
    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// A request carrying `token` as its bearer token.
pub fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header value"),
    );
    request
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`. Tests wait for conditions, never for
/// fixed times.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_urls_swap_only_the_database() {
        assert_eq!(
            with_database("postgres://root@127.0.0.1:5432/postgres", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://root@h:5/postgres?sslmode=disable", "x"),
            "postgres://root@h:5/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://root@h:5", "x"),
            "postgres://root@h:5/x"
        );
    }
}
