//! Identity resolution: which customer each incoming record belongs to, which customers turn out to be one person,
//! and which identifiers conflict. Pure logic; the database layer loads the customers a batch touches, runs
//! [`resolve`], and writes the resulting [`Plan`] back in a few set-based statements.
//!
//! The rules, applied record by record in batch order (so later records see earlier ones):
//!
//! 1. A record whose identifiers nobody owns creates a customer.
//! 2. Otherwise the record belongs to the owner of its strongest identifier (external id, then web account, loyalty
//!    card, till id, partner id, email, phone).
//! 3. If its identifiers belong to several customers, they are the same person and are merged, the oldest customer
//!    surviving, unless the merge would give one customer two different values of a single-valued kind (two web
//!    accounts, two loyalty cards, two ids in one partner's system). Then nothing merges and a conflict is
//!    reported.
//! 4. Identifiers nobody owns are attached to the customer, except a single-valued one whose slot the customer
//!    already fills with another value: that is a conflict too, and it is not attached.
//! 5. The record's profile fields overwrite the customer's; fields it leaves empty keep their values.
//!
//! A later record can change how an earlier one resolves (an identifier the earlier one names gets its owner only
//! further on), so the batch is applied repeatedly until a pass changes no identity decision. Those decisions only
//! ever shrink the world (fewer unowned identifiers, fewer customers), so this ends, and a retry of the same batch is
//! one more pass that changes nothing. A record counts as a change when it created, attached or merged something,
//! or when its customer's profile ends the batch different from before in a field the record gives.

use std::collections::{BTreeMap, HashMap};

use super::customer::{CustomerRecord, Profile};
use super::identifier::{Identifier, Kind};

/// A customer that existed before the batch, with all its identifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownCustomer {
    pub id: i64,
    pub identifiers: Vec<Identifier>,
    pub profile: Profile,
}

/// A customer during resolution: one that existed (by id) or one the batch creates (by creation order). Existing
/// customers sort first and by id, so the minimum of two is the one that survives a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CustomerRef {
    Existing(i64),
    New(usize),
}

/// An identifier not attached, or a merge not made, because a single-valued slot would hold two values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The customer the record was applied to.
    pub customer: CustomerRef,
    /// The other owner, when the conflict blocked a merge.
    pub other: Option<CustomerRef>,
    /// The identifier that was not attached or merged through.
    pub identifier: Identifier,
    /// The identifier in the way.
    pub existing: Identifier,
    pub reason: String,
}

/// One merge: `merged` (a customer that existed) became part of `survivor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeStep {
    pub survivor: CustomerRef,
    pub merged: i64,
    pub via: Identifier,
    pub reason: String,
}

/// What happened to one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordOutcome {
    /// The customer the record now belongs to (after every merge of the batch).
    pub customer: CustomerRef,
    /// Whether the record changed anything; a record that changed nothing is a duplicate.
    pub changed: bool,
    pub conflicts: Vec<Conflict>,
}

/// A customer the batch created or changed, in its final state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TouchedCustomer {
    pub customer: CustomerRef,
    pub profile: Profile,
    /// The retailer's own id for the customer (its EXTERNAL identifier), if it has one.
    pub external_id: Option<String>,
    pub created: bool,
    /// Whether the stored profile must be rewritten.
    pub profile_changed: bool,
}

/// Everything a batch changes, for the database layer to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub outcomes: Vec<RecordOutcome>,
    /// Every customer created or changed, in final form; new ones in creation order.
    pub touched: Vec<TouchedCustomer>,
    /// Identifiers to attach, each to its final owner.
    pub attach: Vec<(Identifier, CustomerRef)>,
    /// Merges of existing customers, in the order they happened.
    pub merges: Vec<MergeStep>,
    /// Where each merged existing customer ended up.
    pub merged_into: Vec<(i64, CustomerRef)>,
    pub conflicts: Vec<Conflict>,
}

#[derive(Debug)]
struct State {
    identifiers: Vec<Identifier>,
    profile: Profile,
    /// The profile before the batch; `None` for customers the batch creates.
    initial: Option<Profile>,
    created: bool,
    /// Whether identifiers were attached or customers merged into it.
    identity_changed: bool,
}

impl State {
    fn profile_changed(&self) -> bool {
        self.initial.as_ref() != Some(&self.profile)
    }
}

/// Most passes over a batch; a realistic batch settles in two (the second only confirms the first).
const MAX_PASSES: usize = 8;

struct Resolver {
    owner: HashMap<Identifier, CustomerRef>,
    customers: BTreeMap<CustomerRef, State>,
    forward: HashMap<CustomerRef, CustomerRef>,
    new_count: usize,
    attach: Vec<(Identifier, CustomerRef)>,
    merges: Vec<MergeStep>,
}

/// Resolves `records` against `known`, the customers that own any of the records' identifiers.
pub fn resolve(known: Vec<KnownCustomer>, records: &[CustomerRecord]) -> Plan {
    let mut resolver = Resolver {
        owner: HashMap::new(),
        customers: BTreeMap::new(),
        forward: HashMap::new(),
        new_count: 0,
        attach: Vec::new(),
        merges: Vec::new(),
    };
    for customer in known {
        let reference = CustomerRef::Existing(customer.id);
        for identifier in &customer.identifiers {
            resolver.owner.insert(identifier.clone(), reference);
        }
        resolver.customers.insert(
            reference,
            State {
                identifiers: customer.identifiers,
                initial: Some(customer.profile.clone()),
                profile: customer.profile,
                created: false,
                identity_changed: false,
            },
        );
    }
    let mut outcomes: Vec<RecordOutcome> = records
        .iter()
        .map(|record| resolver.apply(record))
        .collect();
    for _ in 1..MAX_PASSES {
        let again: Vec<RecordOutcome> = records
            .iter()
            .map(|record| resolver.apply(record))
            .collect();
        let settled = again.iter().all(|outcome| !outcome.changed);
        for (outcome, later) in outcomes.iter_mut().zip(again) {
            outcome.changed |= later.changed;
            outcome.customer = later.customer;
            outcome.conflicts = later.conflicts;
        }
        if settled {
            break;
        }
    }
    resolver.finish(outcomes, records)
}

impl Resolver {
    fn resolve(&self, mut reference: CustomerRef) -> CustomerRef {
        while let Some(&next) = self.forward.get(&reference) {
            reference = next;
        }
        reference
    }

    fn owner_of(&self, identifier: &Identifier) -> Option<CustomerRef> {
        self.owner.get(identifier).map(|&owner| self.resolve(owner))
    }

    fn state(&mut self, reference: CustomerRef) -> &mut State {
        self.customers
            .get_mut(&reference)
            .expect("every live customer reference has a state")
    }

    fn apply(&mut self, record: &CustomerRecord) -> RecordOutcome {
        let mut changed = false;
        let mut conflicts = Vec::new();

        // Owners in order of the strongest identifier pointing at each (record identifiers are sorted by kind).
        let mut owners: Vec<(CustomerRef, &Identifier)> = Vec::new();
        for identifier in &record.identifiers {
            if let Some(owner) = self.owner_of(identifier)
                && !owners.iter().any(|(known, _)| *known == owner)
            {
                owners.push((owner, identifier));
            }
        }

        let mut primary = match owners.first() {
            Some(&(owner, _)) => owner,
            None => {
                let reference = CustomerRef::New(self.new_count);
                self.new_count += 1;
                self.customers.insert(
                    reference,
                    State {
                        identifiers: Vec::new(),
                        profile: Profile::default(),
                        initial: None,
                        created: true,
                        identity_changed: true,
                    },
                );
                changed = true;
                reference
            }
        };

        for &(other, via) in owners.iter().skip(1) {
            primary = self.resolve(primary);
            let other = self.resolve(other);
            if other == primary {
                continue;
            }
            match self.clash(primary, other) {
                None => {
                    primary = self.merge(primary, other, via);
                    changed = true;
                }
                Some((mine, theirs)) => conflicts.push(Conflict {
                    customer: primary,
                    other: Some(other),
                    identifier: via.clone(),
                    existing: mine.clone(),
                    reason: format!(
                        "not merging {} with {} through {}: they have different {} ({} and {})",
                        describe(primary),
                        describe(other),
                        via,
                        mine.kind().name(),
                        mine.value(),
                        theirs.value()
                    ),
                }),
            }
        }

        for identifier in &record.identifiers {
            if self.owner_of(identifier).is_some() {
                continue;
            }
            let state = self.state(primary);
            let taken = identifier.kind().single_valued().then(|| {
                state
                    .identifiers
                    .iter()
                    .find(|held| held.slot() == identifier.slot())
                    .cloned()
            });
            if let Some(Some(existing)) = taken {
                conflicts.push(Conflict {
                    customer: primary,
                    other: None,
                    reason: format!(
                        "not attaching {identifier} to {}: it already has {} {}",
                        describe(primary),
                        existing.kind().name(),
                        existing.value()
                    ),
                    identifier: identifier.clone(),
                    existing,
                });
                continue;
            }
            state.identifiers.push(identifier.clone());
            state.identity_changed = true;
            self.owner.insert(identifier.clone(), primary);
            self.attach.push((identifier.clone(), primary));
            changed = true;
        }

        // Profiles decide nothing about identity: whether they changed is judged once the batch settles.
        self.state(primary).profile.apply(&record.profile);
        RecordOutcome {
            customer: primary,
            changed,
            conflicts,
        }
    }

    /// The first single-valued slot `a` and `b` fill with different values, if any.
    fn clash(&self, a: CustomerRef, b: CustomerRef) -> Option<(Identifier, Identifier)> {
        let (a, b) = (&self.customers[&a], &self.customers[&b]);
        a.identifiers
            .iter()
            .filter(|mine| mine.kind().single_valued())
            .find_map(|mine| {
                b.identifiers
                    .iter()
                    .find(|theirs| theirs.slot() == mine.slot() && *theirs != mine)
                    .map(|theirs| (mine.clone(), theirs.clone()))
            })
    }

    /// Merges two customers; the older survives. Returns the survivor.
    fn merge(&mut self, a: CustomerRef, b: CustomerRef, via: &Identifier) -> CustomerRef {
        let (survivor, merged) = if a < b { (a, b) } else { (b, a) };
        let merged_state = self
            .customers
            .remove(&merged)
            .expect("merged customer is live");
        let state = self.state(survivor);
        state.identifiers.extend(merged_state.identifiers);
        state.profile.fill_gaps(&merged_state.profile);
        state.identity_changed = true;
        self.forward.insert(merged, survivor);
        if let CustomerRef::Existing(merged_id) = merged {
            self.merges.push(MergeStep {
                survivor,
                merged: merged_id,
                via: via.clone(),
                reason: format!(
                    "{} and {} share {via}",
                    describe(survivor),
                    describe(merged)
                ),
            });
        }
        survivor
    }

    fn finish(self, mut outcomes: Vec<RecordOutcome>, records: &[CustomerRecord]) -> Plan {
        let mut conflicts = Vec::new();
        for (outcome, record) in outcomes.iter_mut().zip(records) {
            outcome.customer = self.resolve(outcome.customer);
            let state = &self.customers[&outcome.customer];
            outcome.changed |=
                gives_a_change(&record.profile, state.initial.as_ref(), &state.profile);
            for conflict in &mut outcome.conflicts {
                conflict.customer = self.resolve(conflict.customer);
                conflict.other = conflict.other.map(|other| self.resolve(other));
            }
            conflicts.extend(outcome.conflicts.iter().cloned());
        }
        let touched = self
            .customers
            .iter()
            .filter(|(_, state)| state.created || state.identity_changed || state.profile_changed())
            .map(|(&customer, state)| TouchedCustomer {
                customer,
                profile: state.profile.clone(),
                external_id: state
                    .identifiers
                    .iter()
                    .find(|identifier| identifier.kind() == Kind::External)
                    .map(|identifier| identifier.value().to_owned()),
                created: state.created,
                profile_changed: state.profile_changed(),
            })
            .collect();
        let attach = self
            .attach
            .iter()
            .map(|(identifier, owner)| (identifier.clone(), self.resolve(*owner)))
            .collect();
        let merged_into = self
            .merges
            .iter()
            .map(|step| (step.merged, self.resolve(step.survivor)))
            .collect();
        Plan {
            outcomes,
            touched,
            attach,
            merges: self.merges,
            merged_into,
            conflicts,
        }
    }
}

/// Whether the batch left a field that `given` provides different from how it was before (`initial`; `None` for a
/// customer the batch created, which had nothing).
fn gives_a_change(given: &Profile, initial: Option<&Profile>, now: &Profile) -> bool {
    let empty = Profile::default();
    let initial = initial.unwrap_or(&empty);
    (given.given_name.is_some() && initial.given_name != now.given_name)
        || (given.family_name.is_some() && initial.family_name != now.family_name)
        || (given.birth_date.is_some() && initial.birth_date != now.birth_date)
        || (given.postcode.is_some() && initial.postcode != now.postcode)
        || (given.country.is_some() && initial.country != now.country)
}

fn describe(customer: CustomerRef) -> String {
    match customer {
        CustomerRef::Existing(id) => format!("customer {id}"),
        CustomerRef::New(_) => "a new customer".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(kind: Kind, value: &str) -> Identifier {
        let namespace = if kind == Kind::Partner { "app" } else { "" };
        Identifier::parse(kind, value, namespace, None).unwrap()
    }

    fn record(mut identifiers: Vec<Identifier>) -> CustomerRecord {
        identifiers.sort();
        CustomerRecord {
            identifiers,
            profile: Profile::default(),
        }
    }

    fn known(id_: i64, identifiers: Vec<Identifier>) -> KnownCustomer {
        KnownCustomer {
            id: id_,
            identifiers,
            profile: Profile::default(),
        }
    }

    #[test]
    fn an_unknown_person_becomes_a_new_customer_and_a_repeat_joins_it() {
        let email = id(Kind::Email, "ada@example.com");
        let plan = resolve(
            vec![],
            &[record(vec![email.clone()]), record(vec![email.clone()])],
        );
        assert_eq!(plan.outcomes[0].customer, CustomerRef::New(0));
        assert!(plan.outcomes[0].changed);
        assert_eq!(plan.outcomes[1].customer, CustomerRef::New(0));
        assert!(
            !plan.outcomes[1].changed,
            "the second record is a duplicate"
        );
        assert_eq!(plan.attach, vec![(email, CustomerRef::New(0))]);
    }

    #[test]
    fn a_store_customer_and_a_web_customer_sharing_an_email_merge_into_the_older() {
        let email = id(Kind::Email, "ada@example.com");
        let pos = id(Kind::PosCustomer, "till-7");
        let web = id(Kind::WebAccount, "w-1");
        let world = vec![
            known(10, vec![pos.clone()]),
            known(4, vec![web.clone(), email.clone()]),
        ];
        let plan = resolve(world, &[record(vec![pos.clone(), email.clone()])]);
        assert_eq!(plan.outcomes[0].customer, CustomerRef::Existing(4));
        assert_eq!(plan.merges.len(), 1);
        assert_eq!(plan.merges[0].merged, 10);
        assert_eq!(plan.merges[0].via, email);
        assert_eq!(plan.merged_into, vec![(10, CustomerRef::Existing(4))]);
        assert!(plan.conflicts.is_empty());
    }

    #[test]
    fn two_web_accounts_never_merge_silently() {
        let email = id(Kind::Email, "ada@example.com");
        let web1 = id(Kind::WebAccount, "w-1");
        let web2 = id(Kind::WebAccount, "w-2");
        let world = vec![
            known(1, vec![web1.clone()]),
            known(2, vec![web2.clone(), email.clone()]),
        ];
        let plan = resolve(world, &[record(vec![web1.clone(), email.clone()])]);
        assert!(plan.merges.is_empty());
        assert_eq!(
            plan.outcomes[0].customer,
            CustomerRef::Existing(1),
            "the stronger identifier decides"
        );
        let conflict = &plan.conflicts[0];
        assert_eq!(conflict.other, Some(CustomerRef::Existing(2)));
        assert_eq!(conflict.identifier, email);
        assert_eq!(conflict.existing, web1);
        assert!(
            conflict.reason.contains("w-1") && conflict.reason.contains("w-2"),
            "{}",
            conflict.reason
        );
    }

    #[test]
    fn a_second_loyalty_card_is_reported_not_attached() {
        let card1 = id(Kind::LoyaltyCard, "C1");
        let card2 = id(Kind::LoyaltyCard, "C2");
        let email = id(Kind::Email, "ada@example.com");
        let plan = resolve(
            vec![known(1, vec![card1.clone(), email.clone()])],
            &[record(vec![email, card2.clone()])],
        );
        assert!(plan.attach.is_empty());
        assert_eq!(plan.conflicts[0].identifier, card2);
        assert_eq!(plan.conflicts[0].existing, card1);
        assert!(!plan.outcomes[0].changed);
    }

    #[test]
    fn records_in_one_batch_see_each_other() {
        let email = id(Kind::Email, "a@x.io");
        let web = id(Kind::WebAccount, "w");
        let pos = id(Kind::PosCustomer, "p");
        let plan = resolve(
            vec![known(3, vec![pos.clone()])],
            &[
                record(vec![email.clone()]),
                record(vec![web.clone()]),
                record(vec![email.clone(), web.clone(), pos.clone()]),
            ],
        );
        // Both new customers fold into the existing one; no history for customers that never existed.
        assert!(
            plan.outcomes
                .iter()
                .all(|o| o.customer == CustomerRef::Existing(3))
        );
        assert!(plan.merges.is_empty());
        assert!(
            plan.attach
                .iter()
                .all(|(_, owner)| *owner == CustomerRef::Existing(3))
        );
        assert!(
            plan.touched
                .iter()
                .all(|t| t.customer == CustomerRef::Existing(3))
        );
    }

    #[test]
    fn merge_chains_end_at_the_oldest_customer() {
        let a = id(Kind::Email, "a@x.io");
        let b = id(Kind::Email, "b@x.io");
        let world = vec![
            known(5, vec![a.clone()]),
            known(3, vec![b.clone()]),
            known(1, vec![id(Kind::Phone, "+33612345678")]),
        ];
        let plan = resolve(
            world,
            &[
                record(vec![a.clone(), b.clone()]),
                record(vec![b.clone(), id(Kind::Phone, "+33612345678")]),
            ],
        );
        assert_eq!(
            plan.merged_into,
            vec![(5, CustomerRef::Existing(1)), (3, CustomerRef::Existing(1))]
        );
        assert_eq!(plan.outcomes[0].customer, CustomerRef::Existing(1));
    }

    #[test]
    fn merging_keeps_the_survivors_profile_and_fills_its_gaps() {
        let a = id(Kind::Email, "a@x.io");
        let b = id(Kind::Email, "b@x.io");
        let mut older = known(1, vec![a.clone()]);
        older.profile.given_name = Some("Ada".into());
        let mut younger = known(2, vec![b.clone()]);
        younger.profile.given_name = Some("Adeline".into());
        younger.profile.postcode = Some("75001".into());
        let plan = resolve(vec![older, younger], &[record(vec![a, b])]);
        let survivor = &plan.touched[0];
        assert_eq!(survivor.profile.given_name.as_deref(), Some("Ada"));
        assert_eq!(survivor.profile.postcode.as_deref(), Some("75001"));
        assert!(survivor.profile_changed);
    }

    #[test]
    fn a_record_naming_an_identifier_created_later_in_its_batch_settles_before_the_batch_ends() {
        let (web_v2, web_v0) = (id(Kind::WebAccount, "v2"), id(Kind::WebAccount, "v0"));
        let (ext_v0, ext_v2) = (id(Kind::External, "v0"), id(Kind::External, "v2"));
        let (p1, p3) = (id(Kind::Email, "p1@x.io"), id(Kind::Email, "p3@x.io"));
        let world = vec![known(1, vec![web_v2, p1.clone(), ext_v0, p3])];
        // The first record names ext v2, which the second record gives its own customer: only a second pass over the
        // batch attaches web v0 to that customer, as a retry of the batch would.
        let batch = [
            record(vec![ext_v2.clone(), web_v0.clone(), p1]),
            record(vec![ext_v2.clone()]),
        ];
        let plan = resolve(world.clone(), &batch);
        assert!(
            plan.attach.contains(&(web_v0, CustomerRef::New(0))),
            "{:?}",
            plan.attach
        );
        let replay = resolve(apply(&world, &plan), &batch);
        assert!(replay.outcomes.iter().all(|o| !o.changed));
    }

    #[test]
    fn the_last_record_of_a_batch_wins_and_a_retry_is_a_duplicate() {
        let email = id(Kind::Email, "a@x.io");
        let mut ada = record(vec![email.clone()]);
        ada.profile.given_name = Some("Ada".into());
        let mut bea = record(vec![email]);
        bea.profile.given_name = Some("Bea".into());
        let batch = [ada, bea];
        let plan = resolve(vec![], &batch);
        assert_eq!(plan.touched[0].profile.given_name.as_deref(), Some("Bea"));
        let mut world = apply(&[], &plan);
        world[0].profile = plan.touched[0].profile.clone();
        let replay = resolve(world, &batch);
        assert!(
            replay.outcomes.iter().all(|o| !o.changed),
            "a retry changes nothing in the end"
        );
        assert!(replay.touched.is_empty());
    }

    /// Applies a plan to the world it was made for, giving new customers ids after the existing ones.
    fn apply(world: &[KnownCustomer], plan: &Plan) -> Vec<KnownCustomer> {
        let next = world.iter().map(|c| c.id).max().unwrap_or(0) + 1;
        let real = |r: CustomerRef| match r {
            CustomerRef::Existing(id) => id,
            CustomerRef::New(n) => next + n as i64,
        };
        let merged: HashMap<i64, i64> = plan
            .merged_into
            .iter()
            .map(|&(m, s)| (m, real(s)))
            .collect();
        let mut customers: BTreeMap<i64, KnownCustomer> = BTreeMap::new();
        for customer in world {
            let owner = merged.get(&customer.id).copied().unwrap_or(customer.id);
            let entry = customers
                .entry(owner)
                .or_insert_with(|| known(owner, vec![]));
            entry
                .identifiers
                .extend(customer.identifiers.iter().cloned());
        }
        for (identifier, owner) in &plan.attach {
            let owner = real(*owner);
            customers
                .entry(owner)
                .or_insert_with(|| known(owner, vec![]))
                .identifiers
                .push(identifier.clone());
        }
        for touched in &plan.touched {
            let owner = real(touched.customer);
            customers
                .entry(owner)
                .or_insert_with(|| known(owner, vec![]))
                .profile = touched.profile.clone();
        }
        customers.into_values().collect()
    }

    fn arb_identifier() -> impl Strategy<Value = Identifier> {
        let kinds = [
            Kind::External,
            Kind::WebAccount,
            Kind::LoyaltyCard,
            Kind::Partner,
            Kind::Email,
            Kind::Phone,
        ];
        (0..kinds.len(), 0u8..4).prop_map(move |(k, v)| match kinds[k] {
            Kind::Email => id(Kind::Email, &format!("p{v}@x.io")),
            Kind::Phone => id(Kind::Phone, &format!("+3361234567{v}")),
            kind => id(kind, &format!("v{v}")),
        })
    }

    fn arb_record() -> impl Strategy<Value = CustomerRecord> {
        proptest::collection::vec(arb_identifier(), 1..4).prop_filter_map(
            "one value per single-valued slot",
            |ids| {
                let mut clean: Vec<Identifier> = Vec::new();
                for identifier in ids {
                    let clashes = identifier.kind().single_valued()
                        && clean
                            .iter()
                            .any(|c| c.slot() == identifier.slot() && *c != identifier);
                    if !clashes && !clean.contains(&identifier) {
                        clean.push(identifier);
                    }
                }
                Some(record(clean))
            },
        )
    }

    proptest! {
        #[test]
        fn resolution_keeps_every_invariant(batches in proptest::collection::vec(proptest::collection::vec(arb_record(), 1..6), 1..4)) {
            let mut world: Vec<KnownCustomer> = Vec::new();
            for batch in &batches {
                let plan = resolve(world.clone(), batch);
                world = apply(&world, &plan);

                // Every identifier has exactly one owner.
                let mut owners: HashMap<&Identifier, i64> = HashMap::new();
                for customer in &world {
                    for identifier in &customer.identifiers {
                        prop_assert!(owners.insert(identifier, customer.id).is_none(), "{identifier} owned twice");
                    }
                }
                // No customer holds two values of a single-valued slot.
                for customer in &world {
                    for a in &customer.identifiers {
                        for b in &customer.identifiers {
                            prop_assert!(!(a.kind().single_valued() && a.slot() == b.slot() && a != b),
                                "customer {} holds {a} and {b}", customer.id);
                        }
                    }
                }
                // Every identifier of a record is owned by someone or reported in one of its conflicts.
                for (record, outcome) in batch.iter().zip(&plan.outcomes) {
                    for identifier in &record.identifiers {
                        prop_assert!(
                            owners.contains_key(identifier)
                                || outcome.conflicts.iter().any(|c| &c.identifier == identifier),
                            "{identifier} was dropped without a conflict"
                        );
                    }
                }
                // Replaying the batch changes nothing.
                let replay = resolve(world.clone(), batch);
                prop_assert!(replay.outcomes.iter().all(|o| !o.changed), "replay changed something");
                prop_assert!(replay.attach.is_empty() && replay.merges.is_empty());
            }
        }
    }
}
