//! Serving bundles of gRPC services behind one tower stack, with health, reflection and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use boomerang_auth::{AuthLayer, TokenKeys};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::service::RoutesBuilder;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::BoxError;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::coalesce::CoalescedWrites;
use crate::config::{KitConfig, ServerConfig};
use crate::shutdown::Shutdown;

/// The health service name that reports SERVING for as long as the process is up, for liveness probes. Readiness
/// probes use the empty name, which follows every dependency.
pub const LIVENESS: &str = "liveness";

/// What a hosting process gives each service it runs.
#[derive(Clone, Debug)]
pub struct Platform {
    pub config: KitConfig,
    pub keys: Arc<TokenKeys>,
    pub shutdown: Shutdown,
}

impl Platform {
    /// A platform for `config`; fails when the token secret is missing or too short.
    pub fn new(config: KitConfig, shutdown: Shutdown) -> Result<Self, boomerang_auth::AuthError> {
        let keys = Arc::new(TokenKeys::from_secret(config.auth.secret.as_bytes())?);
        Ok(Self {
            config,
            keys,
            shutdown,
        })
    }

    /// A pool for a service's own schema.
    pub fn pg_pool(&self, schema: &str) -> Result<PgPool, sqlx::Error> {
        crate::db::pool(&self.config.postgres, schema)
    }
}

/// A dependency whose health decides whether a service is ready.
#[derive(Clone)]
pub enum Probe {
    Postgres(PgPool),
    /// Checked with a fresh connection each time, so a service starts (NOT_SERVING) while Redis is still down.
    Redis(redis::Client),
}

impl Probe {
    async fn check(&self) -> Result<(), String> {
        let check = async {
            match self {
                Probe::Postgres(pool) => sqlx::query("SELECT 1")
                    .execute(pool)
                    .await
                    .map(drop)
                    .map_err(|err| format!("postgres: {err}")),
                Probe::Redis(client) => {
                    let ping = async {
                        let mut connection = client.get_multiplexed_async_connection().await?;
                        redis::cmd("PING")
                            .query_async::<String>(&mut connection)
                            .await
                    };
                    ping.await.map(drop).map_err(|err| format!("redis: {err}"))
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(2), check)
            .await
            .unwrap_or_else(|_| Err("probe timed out after 2s".to_owned()))
    }
}

type Register = Box<dyn FnOnce(&mut RoutesBuilder) + Send>;

/// One service as a host runs it: its gRPC routes, the dependencies its readiness follows and its background tasks.
pub struct ServiceBundle {
    name: &'static str,
    register: Vec<Register>,
    probes: Vec<Probe>,
    tasks: Vec<JoinHandle<()>>,
}

impl ServiceBundle {
    /// A bundle reporting health under `name`, the fully qualified gRPC service name.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            register: Vec::new(),
            probes: Vec::new(),
            tasks: Vec::new(),
        }
    }

    /// Adds gRPC services to the routes (the closure receives the server's route builder).
    pub fn routes(mut self, register: impl FnOnce(&mut RoutesBuilder) + Send + 'static) -> Self {
        self.register.push(Box::new(register));
        self
    }

    /// Makes readiness follow `probe`.
    pub fn probe(mut self, probe: Probe) -> Self {
        self.probes.push(probe);
        self
    }

    /// A background task that ends on shutdown; the server waits for it before returning.
    pub fn task(mut self, task: JoinHandle<()>) -> Self {
        self.tasks.push(task);
        self
    }
}

/// The server could not start or failed while serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot build reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `bundles` on `listener` until `shutdown` is triggered, then stops as the operations brief says: health
/// turns NOT_SERVING at once, calls are still answered for `shutdown_delay`, then no new calls are accepted and
/// in-flight ones get `shutdown_grace` to finish.
pub async fn serve(
    config: &ServerConfig,
    listener: TcpListener,
    keys: Arc<TokenKeys>,
    bundles: Vec<ServiceBundle>,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    // Boomerang's APIs, health, and the google.rpc error details, so tools such as grpcurl decode field violations.
    let descriptors = [
        boomerang_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_types::pb::FILE_DESCRIPTOR_SET,
    ];
    let reflection = || {
        descriptors.iter().fold(
            tonic_reflection::server::Builder::configure(),
            |builder, set| builder.register_encoded_file_descriptor_set(set),
        )
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let mut routes = RoutesBuilder::default();
    routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let mut readiness = Vec::new();
    let mut tasks = Vec::new();
    let mut names = Vec::new();
    for bundle in bundles {
        reporter
            .set_service_status(bundle.name, ServingStatus::NotServing)
            .await;
        for register in bundle.register {
            register(&mut routes);
        }
        names.push(bundle.name);
        readiness.push((bundle.name, bundle.probes));
        tasks.extend(bundle.tasks);
    }
    let readiness_task = tokio::spawn(follow_readiness(
        reporter.clone(),
        readiness,
        config.readiness_interval(),
        shutdown.clone(),
    ));

    let stack = ServiceBuilder::new()
        // Trace outermost so every call gets a span, including the ones refused further in.
        .layer(
            TraceLayer::new_for_grpc()
                .make_span_with(boomerang_telemetry::grpc_request_span::<tonic::body::Body>)
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
        // Turn the errors of the layers below into gRPC statuses with the right codes.
        .map_err(middleware_error_to_status)
        // The timeout wraps the limit and auth so the whole call, however it is spent, has one deadline.
        .layer(TimeoutLayer::new(config.request_timeout()))
        // Shed instead of queueing once the limit is reached: callers get RESOURCE_EXHAUSTED at once and back off.
        .layer(LoadShedLayer::new())
        // One limit for the whole process, not per connection, so many clients cannot multiply it.
        .layer(GlobalConcurrencyLimitLayer::with_semaphore(Arc::new(
            Semaphore::new(config.concurrency_limit),
        )))
        // Authentication innermost: shed calls cost no signature check.
        .layer(AuthLayer::new(keys))
        .into_inner();

    let stop_accepting = {
        let shutdown = shutdown.clone();
        let delay = config.shutdown_delay();
        async move {
            shutdown.wait().await;
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "draining: not serving, answering in-flight calls"
            );
            tokio::time::sleep(delay).await;
        }
    };
    let deadline = {
        let shutdown = shutdown.clone();
        let limit = config.shutdown_delay() + config.shutdown_grace();
        async move {
            shutdown.wait().await;
            tokio::time::sleep(limit).await;
        }
    };
    let local_addr = listener.local_addr().ok();
    tracing::info!(addr = ?local_addr, services = ?names, "serving grpc");
    // The builder's tcp_nodelay applies only to listeners it binds itself: set it on the accepted streams, or Nagle's
    // algorithm holds small responses back until the client's delayed ACK (about 40 ms at the tail).
    // Responses that finish together leave in one write (see `coalesce`).
    let incoming = tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .map(|accepted| accepted.map(CoalescedWrites::new));
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(stack)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming, stop_accepting);
    let result = tokio::select! {
        result = server => result.map_err(ServeError::from),
        () = deadline => {
            tracing::warn!("shutdown grace period elapsed with calls still in flight; exiting");
            Ok(())
        }
    };
    readiness_task.abort();
    for task in tasks {
        if tokio::time::timeout(config.shutdown_grace(), task)
            .await
            .is_err()
        {
            tracing::warn!("a background task did not stop within the grace period");
        }
    }
    tracing::info!("server stopped");
    result
}

fn middleware_error_to_status(err: BoxError) -> BoxError {
    if err.is::<tower::timeout::error::Elapsed>() {
        Box::new(tonic::Status::deadline_exceeded(
            "the call did not finish within the server's request timeout",
        ))
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        Box::new(tonic::Status::resource_exhausted(
            "the server is at its concurrency limit; retry with backoff",
        ))
    } else {
        err
    }
}

/// Keeps each service's health in step with its dependencies until shutdown, then reports NOT_SERVING for all.
async fn follow_readiness(
    reporter: HealthReporter,
    services: Vec<(&'static str, Vec<Probe>)>,
    interval: Duration,
    shutdown: Shutdown,
) {
    let mut was_ready: Vec<Option<bool>> = vec![None; services.len()];
    loop {
        let mut all_ready = true;
        for ((name, probes), was) in services.iter().zip(&mut was_ready) {
            let mut failure = None;
            for probe in probes {
                if let Err(err) = probe.check().await {
                    failure = Some(err);
                    break;
                }
            }
            let ready = failure.is_none();
            all_ready &= ready;
            if *was != Some(ready) {
                match &failure {
                    None => tracing::info!(service = name, "ready"),
                    Some(err) => tracing::warn!(service = name, error = %err, "not ready"),
                }
                *was = Some(ready);
            }
            let status = if ready {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status(*name, status).await;
        }
        let overall = if all_ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter.set_service_status("", overall).await;
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.wait() => break,
        }
    }
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    for (name, _) in &services {
        reporter
            .set_service_status(*name, ServingStatus::NotServing)
            .await;
    }
}
