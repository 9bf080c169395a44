//! A tenant's customers in memory (features and stored evaluation), and the copies kept between full recomputes.
//!
//! A full recompute, a preview or a model fit needs every customer of the tenant; reading a million of them from
//! Postgres takes about two seconds. The last copy read is kept, tagged with the membership version it reflects,
//! and brought up to date by re-reading only the customers that the feature log names since that version (see
//! `db::features::load_current`). Copies are kept within a budget of customers, the least recently used going
//! first.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use crate::db::features::Stored;
use crate::domain::evaluate::Features;
use crate::tenant_locks::TenantLocks;

/// Whether `changed` customers are a small part of `of`: at most a quarter (or a few thousand).
pub fn small_change(changed: usize, of: usize) -> bool {
    changed <= (of / 4).max(5_000)
}

/// One customer: its features and its stored evaluation.
pub type Row = (Features, Stored);

/// Every stored customer of a tenant: one vector per range of customer ids as read, so the parts are never
/// copied into one.
#[derive(Debug, Default, Clone)]
pub struct Population {
    parts: Vec<Vec<Row>>,
}

impl Population {
    pub fn from_parts(parts: Vec<Vec<Row>>) -> Self {
        Self { parts }
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Row> {
        self.parts.iter().flatten()
    }

    /// Slices covering everyone, at least one per core (up to eight), for evaluating in parallel.
    pub fn per_core(&self) -> Vec<&[Row]> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.slices(cores.min(8))
    }

    /// At least `threads` slices (when there are that many customers) covering everyone, for parallel work.
    pub fn slices(&self, threads: usize) -> Vec<&[Row]> {
        let size = self.len().div_ceil(threads.max(1)).max(1);
        self.parts
            .iter()
            .flat_map(|part| part.chunks(size))
            .collect()
    }

    /// Replaces the rows of the `changed` customers with `fresh`, their rows as stored now. A changed customer
    /// without a fresh row no longer has one (merged into another, erased); a fresh row of a customer not held
    /// yet is added.
    pub fn replace(&mut self, changed: &[i64], fresh: Vec<Row>) {
        let changed: HashSet<i64> = changed.iter().copied().collect();
        let mut fresh: HashMap<i64, Row> = fresh
            .into_iter()
            .map(|row| (row.0.customer_id, row))
            .collect();
        for part in &mut self.parts {
            part.retain_mut(|row| {
                if !changed.contains(&row.0.customer_id) {
                    return true;
                }
                match fresh.remove(&row.0.customer_id) {
                    Some(new) => {
                        *row = new;
                        true
                    }
                    None => false,
                }
            });
        }
        if fresh.is_empty() {
            return;
        }
        if self.parts.is_empty() {
            self.parts.push(Vec::new());
        }
        let last = self.parts.last_mut().expect("a part");
        last.extend(fresh.into_values());
    }

    /// Sets the stored evaluation of the customers in `updates` (what a recompute wrote).
    pub fn set_stored(&mut self, updates: &[(i64, Stored)]) {
        if updates.is_empty() {
            return;
        }
        let updates: HashMap<i64, &Stored> = updates.iter().map(|(id, s)| (*id, s)).collect();
        for (features, stored) in self.parts.iter_mut().flatten() {
            if let Some(new) = updates.get(&features.customer_id) {
                stored.clone_from(new);
            }
        }
    }
}

/// A kept copy of a tenant's population and the membership version it reflects.
pub struct Held {
    pub version: i64,
    pub population: Arc<Population>,
}

/// The kept copies, within a budget of customers in all.
#[derive(Clone)]
pub struct Residents {
    budget: usize,
    held: Arc<Mutex<Kept>>,
    /// Per tenant, whose turn it is with the copy: a recompute, preview or fit that comes while another has the copy
    /// out waits for it to come back caught up, instead of finding it gone and reading the whole tenant.
    turns: TenantLocks,
}

/// A caller's turn with a tenant's kept copy: it takes the copy out, brings it up to date and keeps it again before
/// the turn ends; a caller that fails lets it go, and the next one reads in full.
pub struct Turn {
    residents: Residents,
    tenant: String,
    _lock: OwnedMutexGuard<()>,
}

impl Turn {
    /// Takes the copy out if it reflects `version` or an earlier one (a later copy stays for those who can use it).
    pub fn take(&self, version: i64) -> Option<Held> {
        self.residents.take(&self.tenant, version)
    }
}

/// A tenant's population lent to a reader (a preview, a model fit) together with the tenant's turn with its kept
/// copy: a recompute that comes while it is read waits for it to be dropped, instead of copying the whole population
/// to change it (which would hold a second population outside the budget).
pub struct Lent {
    population: Arc<Population>,
    _turn: Turn,
}

impl Lent {
    pub fn new(population: Arc<Population>, turn: Turn) -> Self {
        Self {
            population,
            _turn: turn,
        }
    }
}

impl std::ops::Deref for Lent {
    type Target = Population;

    fn deref(&self) -> &Population {
        &self.population
    }
}

#[derive(Default)]
struct Kept {
    tenants: HashMap<String, (Held, u64)>,
    /// Incremented at every use, to find the least recently used copy.
    clock: u64,
}

impl Residents {
    /// Copies of at most `budget` customers in all (0 keeps none).
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            held: Arc::default(),
            turns: TenantLocks::default(),
        }
    }

    /// Waits for the tenant's turn with its copy.
    pub async fn turn(&self, tenant: &str) -> Turn {
        Turn {
            residents: self.clone(),
            tenant: tenant.to_owned(),
            _lock: self.turns.lock(tenant).await,
        }
    }

    fn take(&self, tenant: &str, version: i64) -> Option<Held> {
        let mut kept = self.held.lock().expect("residents");
        match kept.tenants.get(tenant) {
            Some((held, _)) if held.version <= version => {
                kept.tenants.remove(tenant).map(|(h, _)| h)
            }
            _ => None,
        }
    }

    /// Keeps `population` as the tenant's copy at `version`, unless a later copy is kept already or it does not
    /// fit the budget; evicts the least recently used copies of other tenants to make room.
    pub fn keep(&self, tenant: &str, version: i64, population: Arc<Population>) {
        let size = population.len();
        if size > self.budget {
            return;
        }
        let mut kept = self.held.lock().expect("residents");
        if matches!(kept.tenants.get(tenant), Some((held, _)) if held.version > version) {
            return;
        }
        kept.clock += 1;
        let clock = kept.clock;
        // Copies that go are freed after the lock is released.
        let mut gone = Vec::new();
        let replaced = kept.tenants.insert(
            tenant.to_owned(),
            (
                Held {
                    version,
                    population,
                },
                clock,
            ),
        );
        gone.extend(replaced);
        loop {
            let total: usize = kept.tenants.values().map(|(h, _)| h.population.len()).sum();
            if total <= self.budget {
                break;
            }
            let oldest = kept
                .tenants
                .iter()
                .filter(|(name, _)| name.as_str() != tenant)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(name, _)| name.clone());
            match oldest.and_then(|name| kept.tenants.remove(&name)) {
                Some(evicted) => gone.push(evicted),
                None => break,
            }
        }
        drop(kept);
        drop(gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, frequency: u32, segments: &[i16]) -> Row {
        (
            Features {
                customer_id: id,
                frequency,
                ..Features::default()
            },
            Stored {
                segments: segments.to_vec(),
                due: None,
            },
        )
    }

    fn summary(population: &Population) -> Vec<(i64, u32, Vec<i16>)> {
        let mut rows: Vec<_> = population
            .iter()
            .map(|(f, s)| (f.customer_id, f.frequency, s.segments.clone()))
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn replacing_changed_customers_updates_removes_and_adds() {
        let mut population = Population::from_parts(vec![
            vec![row(1, 1, &[1]), row(2, 1, &[1])],
            vec![row(10, 1, &[2]), row(11, 1, &[2])],
        ]);
        // 2 has a new order, 10 was merged away, 12 is new; 1 and 11 are untouched.
        population.replace(&[2, 10, 12], vec![row(12, 1, &[]), row(2, 2, &[3])]);
        assert_eq!(
            summary(&population),
            [
                (1, 1, vec![1]),
                (2, 2, vec![3]),
                (11, 1, vec![2]),
                (12, 1, vec![])
            ]
        );
        population.set_stored(&[(
            11,
            Stored {
                segments: vec![4, 5],
                due: None,
            },
        )]);
        assert_eq!(summary(&population)[2], (11, 1, vec![4, 5]));
    }

    #[test]
    fn an_empty_population_takes_new_customers() {
        let mut population = Population::default();
        population.replace(&[7], vec![row(7, 3, &[])]);
        assert_eq!(summary(&population), [(7, 3, vec![])]);
    }

    fn of(n: i64) -> Arc<Population> {
        Arc::new(Population::from_parts(vec![
            (0..n).map(|id| row(id, 1, &[])).collect(),
        ]))
    }

    #[test]
    fn copies_stay_within_the_budget_least_recently_used_first() {
        let residents = Residents::new(10);
        residents.keep("a", 1, of(4));
        residents.keep("b", 1, of(4));
        // Using a's copy makes b the least recently used.
        let a = residents.take("a", 5).expect("a is kept");
        residents.keep("a", 5, a.population);
        residents.keep("c", 1, of(4));
        assert!(residents.take("b", 9).is_none(), "b was evicted");
        assert_eq!(residents.take("a", 9).map(|h| h.version), Some(5));
        assert!(residents.take("c", 9).is_some());
        residents.keep("huge", 1, of(11));
        assert!(
            residents.take("huge", 9).is_none(),
            "larger than the budget"
        );
    }

    #[test]
    fn a_later_copy_is_neither_replaced_by_an_earlier_one_nor_taken_for_one() {
        let residents = Residents::new(100);
        residents.keep("a", 7, of(2));
        residents.keep("a", 6, of(3));
        assert!(
            residents.take("a", 6).is_none(),
            "a snapshot at 6 cannot use the copy at 7"
        );
        let held = residents.take("a", 7).expect("kept");
        assert_eq!((held.version, held.population.len()), (7, 2));
    }

    #[tokio::test]
    async fn a_lent_population_keeps_the_tenants_turn_until_it_is_dropped() {
        let residents = Residents::new(100);
        let lent = Lent::new(of(3), residents.turn("a").await);
        let wait = std::time::Duration::from_millis(50);
        assert!(
            tokio::time::timeout(wait, residents.turn("a"))
                .await
                .is_err(),
            "a recompute waits while a preview reads the population"
        );
        assert!(
            tokio::time::timeout(wait, residents.turn("b"))
                .await
                .is_ok(),
            "other tenants do not wait"
        );
        assert_eq!(lent.len(), 3);
        drop(lent);
        assert!(
            tokio::time::timeout(wait, residents.turn("a"))
                .await
                .is_ok()
        );
    }
}
