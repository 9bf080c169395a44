//! An in-process cache of which customer owns an identifier, so that busy feeds (orders naming the same customers
//! again and again) skip most identity lookups.
//!
//! It stays correct without any invalidation message. An identifier changes owner only when customers merge or a
//! person is erased; both happen under the tenant's exclusive identity lock and bump the tenant's identity epoch in
//! the same transaction. Writers that use the cache hold that lock shared and read the epoch after taking it, so
//! while their transaction lasts the epoch cannot move, and entries read under the same epoch are exactly what
//! Postgres holds. Entries are added only after the transaction that read them committed, so a rolled-back batch
//! leaves no trace. Every replica keeps its own cache under the same rule.

use std::collections::HashMap;
use std::sync::Mutex;

use boomerang_auth::TenantId;

use crate::domain::identifier::Identifier;

/// A tenant whose cache grows past this many entries starts afresh, which bounds memory.
const MAX_ENTRIES_PER_TENANT: usize = 2_000_000;

#[derive(Debug, Default)]
pub struct IdentityCache {
    tenants: Mutex<HashMap<TenantId, TenantEntries>>,
}

#[derive(Debug, Default)]
struct TenantEntries {
    epoch: i64,
    owners: HashMap<Identifier, i64>,
}

impl IdentityCache {
    /// The owners of `identifiers` known for `epoch`, and the identifiers still to look up.
    pub fn owners<'a>(
        &self,
        tenant: &TenantId,
        epoch: i64,
        identifiers: Vec<&'a Identifier>,
    ) -> (HashMap<Identifier, i64>, Vec<&'a Identifier>) {
        let tenants = self.tenants.lock().expect("identity cache lock");
        let Some(entries) = tenants.get(tenant).filter(|entries| entries.epoch == epoch) else {
            return (HashMap::new(), identifiers);
        };
        let mut found = HashMap::with_capacity(identifiers.len());
        let mut missing = Vec::new();
        for identifier in identifiers {
            match entries.owners.get(identifier) {
                Some(&customer) => {
                    found.insert(identifier.clone(), customer);
                }
                None => missing.push(identifier),
            }
        }
        (found, missing)
    }

    /// Remembers owners read under `epoch` by a transaction that has committed.
    pub fn remember<'a>(
        &self,
        tenant: &TenantId,
        epoch: i64,
        owners: impl IntoIterator<Item = (&'a Identifier, &'a i64)>,
    ) {
        let mut tenants = self.tenants.lock().expect("identity cache lock");
        let entries = tenants.entry(tenant.clone()).or_default();
        if epoch < entries.epoch {
            return; // read before a merge or erasure that another batch has already seen
        }
        if epoch > entries.epoch || entries.owners.len() >= MAX_ENTRIES_PER_TENANT {
            entries.owners.clear();
            entries.epoch = epoch;
        }
        entries.owners.extend(
            owners
                .into_iter()
                .map(|(identifier, customer)| (identifier.clone(), *customer)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::identifier::Kind;

    #[test]
    fn entries_live_only_as_long_as_their_epoch() {
        let cache = IdentityCache::default();
        let tenant = TenantId::parse("acme").unwrap();
        let other = TenantId::parse("globex").unwrap();
        let email = Identifier::parse(Kind::Email, "a@x.io", "", None).unwrap();
        cache.remember(&tenant, 3, [(&email, &42)]);
        assert_eq!(cache.owners(&tenant, 3, vec![&email]).0[&email], 42);
        assert!(
            cache.owners(&other, 3, vec![&email]).0.is_empty(),
            "tenants never share entries"
        );
        assert!(
            cache.owners(&tenant, 4, vec![&email]).0.is_empty(),
            "a merge or erasure since voids them"
        );
        cache.remember(&tenant, 4, [(&email, &7)]);
        cache.remember(&tenant, 3, [(&email, &42)]);
        assert_eq!(
            cache.owners(&tenant, 4, vec![&email]).0[&email],
            7,
            "late writers from an older epoch are ignored"
        );
    }
}
