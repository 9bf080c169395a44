//! The Redis cache connection.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;

/// A connection manager that reconnects on its own after Redis restarts or a network fault.
pub async fn connect(config: &RedisConfig) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(config.url.as_str())?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
        .set_response_timeout(Some(std::time::Duration::from_secs(2)));
    ConnectionManager::new_with_config(client, manager_config).await
}
