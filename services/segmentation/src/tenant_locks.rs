//! One async lock per tenant, made on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

#[derive(Clone, Default)]
pub struct TenantLocks {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl TenantLocks {
    /// Waits for the tenant's lock; it is held until the guard is dropped.
    pub async fn lock(&self, tenant: &str) -> OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .expect("tenant locks")
            .entry(tenant.to_owned())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}
