//! Batches: how invalid items are treated (atomic or partial), repeated items within one batch, and per-item
//! results.

use std::collections::HashMap;
use std::hash::Hash;

use boomerang_proto::ingestion as pb;
use boomerang_service_kit::status::FieldViolations;

/// How a batch treats items that cannot be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One bad item rejects the batch; nothing is stored.
    Atomic,
    /// Good items are stored; each item's fate is reported.
    Partial,
}

impl Mode {
    pub fn from_proto(value: i32) -> Result<Self, String> {
        match pb::BatchMode::try_from(value) {
            Ok(pb::BatchMode::Unspecified | pb::BatchMode::Atomic) => Ok(Mode::Atomic),
            Ok(pb::BatchMode::Partial) => Ok(Mode::Partial),
            Err(_) => Err("must be ATOMIC or PARTIAL".into()),
        }
    }
}

/// What happened to one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Stored, or changed what was stored. `resource` is the customer it landed on (empty for guest orders).
    Accepted { resource: String },
    /// Already stored exactly as sent.
    Duplicate { resource: String },
    /// Bad input.
    Invalid(FieldViolations),
    /// Valid but refused, for example because it names an erased person.
    Refused { field: String, reason: String },
}

/// The items of a batch after validation.
#[derive(Debug)]
pub struct Validated<T> {
    /// Valid items to write, with their index in the request. Repeats of an earlier item are not among them.
    pub items: Vec<(usize, T)>,
    /// The fate of every item decided before writing (invalid ones); `None` for the items to write.
    pub fates: Vec<Option<Fate>>,
    /// Items that repeat an earlier item of the batch exactly: (repeat, original).
    repeats: Vec<(usize, usize)>,
}

impl<T> Validated<T> {
    /// Validates every item. In atomic mode any invalid item fails the whole batch with violations named
    /// `{field}[{index}].…`. Items with the same key must be identical: an exact repeat is a duplicate, a repeat with
    /// other content is invalid.
    pub fn new<P, K: Hash + Eq>(
        items: &[P],
        field: &str,
        mode: Mode,
        validate: impl Fn(&P) -> Result<T, FieldViolations>,
        key: impl Fn(&T) -> K,
    ) -> Result<Self, FieldViolations>
    where
        T: PartialEq,
    {
        let mut fates = vec![None; items.len()];
        let mut valid: Vec<(usize, T)> = Vec::with_capacity(items.len());
        let mut first: HashMap<K, usize> = HashMap::with_capacity(items.len());
        let mut repeats = Vec::new();
        let mut all = FieldViolations::new();
        for (index, item) in items.iter().enumerate() {
            match validate(item) {
                Err(violations) => {
                    all.add_nested(&format!("{field}[{index}]"), violations.clone());
                    fates[index] = Some(Fate::Invalid(violations));
                }
                Ok(item) => {
                    match first.get(&key(&item)) {
                        None => {
                            first.insert(key(&item), valid.len());
                            valid.push((index, item));
                        }
                        Some(&position) => {
                            let (original, existing) = &valid[position];
                            if *existing == item {
                                repeats.push((index, *original));
                            } else {
                                let mut violations = FieldViolations::new();
                                violations.add(
                                "",
                                format!("repeats item {original} of this batch with different content"),
                            );
                                all.add_nested(&format!("{field}[{index}]"), violations.clone());
                                fates[index] = Some(Fate::Invalid(violations));
                            }
                        }
                    }
                }
            }
        }
        if mode == Mode::Atomic && !all.is_empty() {
            return Err(all);
        }
        Ok(Self {
            items: valid,
            fates,
            repeats,
        })
    }

    /// Records the fates of written items, gives repeats the resource of their original, and returns every fate in
    /// request order.
    pub fn finish(mut self, written: impl IntoIterator<Item = (usize, Fate)>) -> Vec<Fate> {
        for (index, fate) in written {
            self.fates[index] = Some(fate);
        }
        for (repeat, original) in self.repeats {
            let resource = match &self.fates[original] {
                Some(Fate::Accepted { resource } | Fate::Duplicate { resource }) => {
                    resource.clone()
                }
                _ => String::new(),
            };
            self.fates[repeat] = Some(match &self.fates[original] {
                Some(Fate::Refused { field, reason }) => Fate::Refused {
                    field: field.clone(),
                    reason: reason.clone(),
                },
                _ => Fate::Duplicate { resource },
            });
        }
        self.fates
            .into_iter()
            .map(|fate| fate.expect("every item has a fate once the batch is written"))
            .collect()
    }
}

/// Refused items of an atomic batch, as precondition violations `(type, subject, description)`.
pub fn refusals<'a>(
    fates: impl IntoIterator<Item = &'a (usize, Fate)>,
    field: &str,
) -> Vec<(String, String, String)> {
    fates
        .into_iter()
        .filter_map(|(index, fate)| match fate {
            Fate::Refused { field: sub, reason } => Some((
                "REFUSED".to_owned(),
                format!("{field}[{index}].{sub}"),
                reason.clone(),
            )),
            _ => None,
        })
        .collect()
}

/// Per-item results and their summary, for the response.
pub fn results(
    fates: Vec<Fate>,
    mut conflicts: Vec<Vec<pb::IdentityConflict>>,
) -> (Vec<pb::ItemResult>, pb::BatchSummary) {
    conflicts.resize_with(fates.len(), Vec::new);
    let mut summary = pb::BatchSummary::default();
    let results = fates
        .into_iter()
        .zip(conflicts)
        .enumerate()
        .map(|(index, (fate, conflicts))| {
            let mut result = pb::ItemResult {
                index: index as i32,
                conflicts,
                ..Default::default()
            };
            match fate {
                Fate::Accepted { resource } => {
                    summary.accepted += 1;
                    result.status = pb::ItemStatus::Accepted as i32;
                    result.resource = resource;
                }
                Fate::Duplicate { resource } => {
                    summary.duplicates += 1;
                    result.status = pb::ItemStatus::Duplicate as i32;
                    result.resource = resource;
                }
                Fate::Invalid(violations) => {
                    summary.invalid += 1;
                    result.status = pb::ItemStatus::Invalid as i32;
                    result.violations = violations
                        .reported()
                        .map(|(field, description)| pb::FieldViolation { field, description })
                        .collect();
                }
                Fate::Refused { field, reason } => {
                    summary.refused += 1;
                    result.status = pb::ItemStatus::Refused as i32;
                    result.violations = vec![pb::FieldViolation {
                        field,
                        description: reason,
                    }];
                }
            }
            result
        })
        .collect();
    (results, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &(&'static str, u8)) -> Result<(&'static str, u8), FieldViolations> {
        if value.1 == 0 {
            let mut violations = FieldViolations::new();
            violations.add("amount", "must be positive");
            Err(violations)
        } else {
            Ok(*value)
        }
    }

    #[test]
    fn atomic_batches_fail_whole_and_name_every_bad_item() {
        let items = [("a", 1), ("b", 0), ("c", 0)];
        let err = Validated::new(&items, "orders", Mode::Atomic, check, |v| v.0).unwrap_err();
        let fields: Vec<&str> = err.iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["orders[1].amount", "orders[2].amount"]);
    }

    #[test]
    fn partial_batches_keep_the_good_items_and_spot_repeats() {
        let items = [("a", 1), ("b", 0), ("a", 1), ("a", 2)];
        let validated = Validated::new(&items, "orders", Mode::Partial, check, |v| v.0).unwrap();
        assert_eq!(validated.items, vec![(0, ("a", 1))]);
        let fates = validated.finish([(
            0,
            Fate::Accepted {
                resource: "r".into(),
            },
        )]);
        assert_eq!(
            fates[0],
            Fate::Accepted {
                resource: "r".into()
            }
        );
        assert!(matches!(fates[1], Fate::Invalid(_)));
        assert_eq!(
            fates[2],
            Fate::Duplicate {
                resource: "r".into()
            },
            "an exact repeat is a duplicate"
        );
        assert!(
            matches!(fates[3], Fate::Invalid(_)),
            "a repeat with other content is invalid"
        );
        let (results, summary) = results(fates, vec![]);
        assert_eq!(results.len(), 4);
        assert_eq!(
            (summary.accepted, summary.duplicates, summary.invalid),
            (1, 1, 2)
        );
    }
}
