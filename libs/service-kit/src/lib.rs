//! What every Boomerang service shares: configuration (defaults, then a file, then the environment), Postgres and
//! Redis connections, the gRPC server bootstrap (one tower stack, health that follows the service's dependencies,
//! reflection, graceful shutdown) and the mapping of service errors to gRPC statuses.
//!
//! A service is a library that turns a [`Platform`] into a [`ServiceBundle`]; the per-service binaries, the
//! all-in-one binary and the test harness all serve bundles through [`serve`].

mod coalesce;
pub mod config;
pub mod db;
mod server;
mod shutdown;
pub mod status;
pub mod time;

pub use config::{KitConfig, ServerConfig};
pub use server::{Platform, Probe, ServeError, ServiceBundle, serve};
pub use shutdown::Shutdown;
