//! The six named RFM groups, and mappings that place every one of the 125 RFM cells in exactly one group.

use std::ops::RangeInclusive;

use super::rfm::RfmScore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    New,
    AboutToSleep,
    Sleepers,
    PotentialLoyal,
    Loyal,
    LoyalAtRisk,
}

/// Places the cells whose scores fall in all three ranges into `group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub group: Group,
    pub r: RangeInclusive<u8>,
    pub f: RangeInclusive<u8>,
    pub m: RangeInclusive<u8>,
}

impl Rule {
    fn matches(&self, r: u8, f: u8, m: u8) -> bool {
        self.r.contains(&r) && self.f.contains(&f) && self.m.contains(&m)
    }
}

/// Why a set of rules is not a mapping; the rules are named by their index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("has a range outside 1 to 5 or an empty range")]
    BadRange(usize),
    #[error("no rule places the cells {0:?}")]
    Uncovered(Vec<u16>),
    /// `rule` places `cells`, which the earlier rules `earlier` place too.
    #[error("places the cells {cells:?}, also placed by {}", names(earlier))]
    Overlap {
        rule: usize,
        earlier: Vec<usize>,
        cells: Vec<u16>,
    },
}

fn names(rules: &[usize]) -> String {
    let names: Vec<String> = rules.iter().map(|i| format!("group_rules[{i}]")).collect();
    names.join(", ")
}

/// A total, exclusive map from the 125 RFM cells to groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMapping {
    cells: [Group; 125],
}

fn index(r: u8, f: u8, m: u8) -> usize {
    usize::from(r - 1) * 25 + usize::from(f - 1) * 5 + usize::from(m - 1)
}

impl GroupMapping {
    /// A mapping from rules that together place every cell exactly once. Otherwise every problem comes back at
    /// once: each rule with a bad range; or each rule placing cells an earlier one places (one problem per rule, so
    /// at most as many as there are rules), and the cells no rule places.
    pub fn from_rules(rules: &[Rule]) -> Result<Self, Vec<MappingError>> {
        let valid = |range: &RangeInclusive<u8>| {
            *range.start() >= 1 && *range.end() <= 5 && range.start() <= range.end()
        };
        let bad: Vec<MappingError> = rules
            .iter()
            .enumerate()
            .filter(|(_, rule)| !(valid(&rule.r) && valid(&rule.f) && valid(&rule.m)))
            .map(|(i, _)| MappingError::BadRange(i))
            .collect();
        if !bad.is_empty() {
            return Err(bad);
        }
        let mut cells = [None::<usize>; 125];
        let mut uncovered = Vec::new();
        let mut overlaps = std::collections::BTreeMap::<
            usize,
            (std::collections::BTreeSet<usize>, Vec<u16>),
        >::new();
        for r in 1..=5 {
            for f in 1..=5 {
                for m in 1..=5 {
                    let code = 100 * u16::from(r) + 10 * u16::from(f) + u16::from(m);
                    let matching: Vec<usize> = (0..rules.len())
                        .filter(|&i| rules[i].matches(r, f, m))
                        .collect();
                    match matching.as_slice() {
                        [] => uncovered.push(code),
                        [only] => cells[index(r, f, m)] = Some(*only),
                        several => {
                            for (n, &rule) in several.iter().enumerate().skip(1) {
                                let (earlier, cells) = overlaps.entry(rule).or_default();
                                earlier.extend(&several[..n]);
                                cells.push(code);
                            }
                        }
                    }
                }
            }
        }
        let mut errors: Vec<MappingError> = overlaps
            .into_iter()
            .map(|(rule, (earlier, cells))| MappingError::Overlap {
                rule,
                earlier: earlier.into_iter().collect(),
                cells,
            })
            .collect();
        if !uncovered.is_empty() {
            errors.push(MappingError::Uncovered(uncovered));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            cells: cells.map(|rule| rules[rule.expect("every cell is covered")].group),
        })
    }

    /// The group of a scored customer.
    pub fn group(&self, score: RfmScore) -> Group {
        self.cells[index(score.r, score.f, score.m)]
    }

    /// The default rules (docs/segmentation.md): recency and frequency decide, monetary does not.
    pub fn default_rules() -> Vec<Rule> {
        let rule = |group, r: RangeInclusive<u8>, f: RangeInclusive<u8>| Rule {
            group,
            r,
            f,
            m: 1..=5,
        };
        vec![
            rule(Group::Loyal, 4..=5, 4..=5),
            rule(Group::LoyalAtRisk, 1..=3, 4..=5),
            rule(Group::PotentialLoyal, 3..=5, 2..=3),
            rule(Group::AboutToSleep, 2..=2, 2..=3),
            rule(Group::AboutToSleep, 3..=3, 1..=1),
            rule(Group::Sleepers, 1..=1, 2..=3),
            rule(Group::Sleepers, 1..=2, 1..=1),
            rule(Group::New, 4..=5, 1..=1),
        ]
    }
}

impl Default for GroupMapping {
    fn default() -> Self {
        Self::from_rules(&Self::default_rules()).expect("the default rules place every cell once")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(r: u8, f: u8, m: u8) -> RfmScore {
        RfmScore { r, f, m }
    }

    #[test]
    fn the_default_mapping_places_every_cell_in_exactly_one_group() {
        let mapping = GroupMapping::default();
        let mut seen = std::collections::HashMap::new();
        for r in 1..=5 {
            for f in 1..=5 {
                for m in 1..=5 {
                    *seen.entry(mapping.group(score(r, f, m))).or_insert(0) += 1;
                }
            }
        }
        assert_eq!(seen.values().sum::<i32>(), 125);
        assert_eq!(seen.len(), 6, "all six groups are used");
        assert_eq!(mapping.group(score(5, 5, 1)), Group::Loyal);
        assert_eq!(mapping.group(score(1, 5, 5)), Group::LoyalAtRisk);
        assert_eq!(mapping.group(score(5, 1, 3)), Group::New);
        assert_eq!(mapping.group(score(1, 1, 5)), Group::Sleepers);
        assert_eq!(mapping.group(score(2, 3, 2)), Group::AboutToSleep);
        assert_eq!(mapping.group(score(3, 2, 4)), Group::PotentialLoyal);
    }

    #[test]
    fn gaps_and_overlaps_are_refused_with_the_cells() {
        let mut rules = GroupMapping::default_rules();
        rules.pop();
        let gap = GroupMapping::from_rules(&rules).unwrap_err();
        // Dropping the New rule leaves recent one-time buyers without a group.
        assert_eq!(
            gap,
            [MappingError::Uncovered(vec![
                411, 412, 413, 414, 415, 511, 512, 513, 514, 515
            ])]
        );
        let mut rules = GroupMapping::default_rules();
        rules.push(Rule {
            group: Group::Loyal,
            r: 5..=5,
            f: 5..=5,
            m: 5..=5,
        });
        assert_eq!(
            GroupMapping::from_rules(&rules).unwrap_err(),
            [MappingError::Overlap {
                rule: 8,
                earlier: vec![0],
                cells: vec![555]
            }]
        );
        // Every problem is named, not just the first: both overlaps with their cells, and the cells of the missing
        // New rule.
        let mut rules = GroupMapping::default_rules();
        rules.pop();
        rules.push(Rule {
            group: Group::Loyal,
            r: 5..=5,
            f: 5..=5,
            m: 5..=5,
        });
        rules.push(Rule {
            group: Group::Sleepers,
            r: 1..=1,
            f: 4..=5,
            m: 4..=5,
        });
        assert_eq!(
            GroupMapping::from_rules(&rules).unwrap_err(),
            [
                MappingError::Overlap {
                    rule: 7,
                    earlier: vec![0],
                    cells: vec![555]
                },
                MappingError::Overlap {
                    rule: 8,
                    earlier: vec![1],
                    cells: vec![144, 145, 154, 155]
                },
                MappingError::Uncovered(vec![411, 412, 413, 414, 415, 511, 512, 513, 514, 515]),
            ]
        );
        let mut rules = GroupMapping::default_rules();
        for rule in [2, 5] {
            rules[rule].m = 0..=2;
        }
        assert_eq!(
            GroupMapping::from_rules(&rules).unwrap_err(),
            [MappingError::BadRange(2), MappingError::BadRange(5)]
        );
    }
}
