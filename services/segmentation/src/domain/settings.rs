//! A tenant's scoring settings, with their documented defaults and validation.

use serde::{Deserialize, Serialize};

use super::clusters::MAX_CLUSTERS;
use super::groups::{GroupMapping, MappingError, Rule};
use super::lifecycle::Thresholds;
use super::predictions::Horizon;
use super::segments;

/// The most merchant ids a tenant names as its own.
const MOST_OWN_MERCHANTS: usize = 1000;

/// A rule of the group mapping as stored: a group's segment slug and inclusive score ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRule {
    pub group: String,
    pub r: [u8; 2],
    pub f: [u8; 2],
    pub m: [u8; 2],
}

/// A tenant's settings. Stored as JSON; missing fields take their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub lookback_years: u32,
    pub non_customer_months: u32,
    pub dormant_months: u32,
    pub share_window_months: u32,
    pub declining_share_percent: u32,
    pub new_days: u32,
    pub rupture_multiple: f64,
    pub merchant_category: String,
    pub own_merchant_ids: Vec<String>,
    pub group_rules: Vec<GroupRule>,
    /// K-means clusters besides the RFM groups: 0 (off) or 2 to 12.
    pub clusters: u32,
    pub cluster_seed: u64,
    /// Expected purchases are counted over this many days.
    pub prediction_horizon_days: u32,
    /// Predicted value sums this many 30-day months...
    pub value_months: u32,
    /// ...each discounted by this rate per month.
    pub monthly_discount_rate: f64,
}

impl Default for Settings {
    fn default() -> Self {
        let thresholds = Thresholds::default();
        Self {
            lookback_years: 10,
            non_customer_months: thresholds.non_customer_months,
            dormant_months: thresholds.dormant_months,
            share_window_months: thresholds.share_window_months,
            declining_share_percent: thresholds.declining_share_percent,
            new_days: thresholds.new_days as u32,
            rupture_multiple: 2.5,
            merchant_category: String::new(),
            own_merchant_ids: Vec::new(),
            group_rules: GroupMapping::default_rules()
                .iter()
                .map(|rule| GroupRule {
                    group: segments::fixed_slug(segments::group_segment(rule.group))
                        .unwrap_or_default()
                        .to_owned(),
                    r: [*rule.r.start(), *rule.r.end()],
                    f: [*rule.f.start(), *rule.f.end()],
                    m: [*rule.m.start(), *rule.m.end()],
                })
                .collect(),
            clusters: 0,
            cluster_seed: 42,
            prediction_horizon_days: 90,
            value_months: 12,
            monthly_discount_rate: 0.01,
        }
    }
}

impl Settings {
    /// What predictions look ahead over.
    pub fn horizon(&self) -> Horizon {
        Horizon {
            purchase_days: self.prediction_horizon_days,
            value_months: self.value_months,
            monthly_discount: self.monthly_discount_rate,
        }
    }

    /// Whether the stored features computed under `self` differ from those under `other`: these fields shape the
    /// features' SQL (the order lookback, the category spend and shares), not only their evaluation.
    pub fn shape_features_unlike(&self, other: &Settings) -> bool {
        let shaping = |s: &Settings| {
            (
                s.lookback_years,
                s.non_customer_months,
                s.share_window_months,
                s.merchant_category.clone(),
                s.own_merchant_ids.clone(),
            )
        };
        shaping(self) != shaping(other)
    }
}

/// Settings checked and turned into what evaluation uses.
#[derive(Debug, Clone)]
pub struct Effective {
    pub settings: Settings,
    pub thresholds: Thresholds,
    pub mapping: GroupMapping,
}

impl Settings {
    /// Checks every field; the errors name the field (as in the Settings message) and the reason.
    pub fn validate(self) -> Result<Effective, Vec<(String, String)>> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, field: &str, reason: &str| {
            if !ok {
                errors.push((field.to_owned(), reason.to_owned()));
            }
        };
        check(
            (1..=50).contains(&self.lookback_years),
            "lookback_years",
            "must be between 1 and 50",
        );
        check(
            (1..=120).contains(&self.dormant_months),
            "dormant_months",
            "must be between 1 and 120",
        );
        check(
            self.non_customer_months > self.dormant_months && self.non_customer_months <= 240,
            "non_customer_months",
            "must be more than dormant_months and at most 240",
        );
        // Orders older than the lookback are not eligible, so a longer lifecycle window would skip its states.
        check(
            u64::from(self.non_customer_months) <= 12 * u64::from(self.lookback_years),
            "non_customer_months",
            "must fit in the lookback window: at most 12 × lookback_years",
        );
        check(
            (1..=60).contains(&self.share_window_months),
            "share_window_months",
            "must be between 1 and 60",
        );
        check(
            (1..=100).contains(&self.declining_share_percent),
            "declining_share_percent",
            "must be between 1 and 100",
        );
        check(
            (1..=3650).contains(&self.new_days),
            "new_days",
            "must be between 1 and 3650",
        );
        check(
            self.rupture_multiple.is_finite() && (1.0..=100.0).contains(&self.rupture_multiple),
            "rupture_multiple",
            "must be between 1 and 100",
        );
        check(
            self.merchant_category.len() <= 200 && !self.merchant_category.contains('\0'),
            "merchant_category",
            "must be at most 200 bytes, without NUL characters",
        );
        check(
            self.clusters == 0 || (2..=MAX_CLUSTERS).contains(&self.clusters),
            "clusters",
            "must be 0 (off) or between 2 and 12",
        );
        check(
            (1..=3650).contains(&self.prediction_horizon_days),
            "prediction_horizon_days",
            "must be between 1 and 3650",
        );
        check(
            (1..=120).contains(&self.value_months),
            "value_months",
            "must be between 1 and 120",
        );
        check(
            self.monthly_discount_rate.is_finite()
                && (0.0..=1.0).contains(&self.monthly_discount_rate),
            "monthly_discount_rate",
            "must be between 0 and 1",
        );
        if self.own_merchant_ids.len() > MOST_OWN_MERCHANTS {
            errors.push((
                "own_merchant_ids".into(),
                format!("must have at most {MOST_OWN_MERCHANTS} entries"),
            ));
        } else {
            for (i, merchant) in self.own_merchant_ids.iter().enumerate() {
                if merchant.is_empty() || merchant.len() > 200 || merchant.contains('\0') {
                    errors.push((
                        format!("own_merchant_ids[{i}]"),
                        "must be 1 to 200 bytes, without NUL characters".into(),
                    ));
                }
            }
        }
        // A mapping of more rules than cells has overlaps; refused before the cells are checked, whose cost grows
        // with the square of the rules.
        if self.group_rules.len() > 125 {
            errors.push((
                "group_rules".into(),
                "must have at most 125 rules (one per cell)".into(),
            ));
            return Err(errors);
        }
        let mut rules = Vec::new();
        for (i, rule) in self.group_rules.iter().enumerate() {
            match segments::by_slug(&rule.group).and_then(|def| segments::segment_group(def.id)) {
                Some(group) => rules.push(Rule {
                    group,
                    r: rule.r[0]..=rule.r[1],
                    f: rule.f[0]..=rule.f[1],
                    m: rule.m[0]..=rule.m[1],
                }),
                None => errors.push((
                    format!("group_rules[{i}].group"),
                    "must be the id of an RFM group segment, for example rfm-loyal".into(),
                )),
            }
        }
        // The mapping is checked whenever every rule names a group, so all errors come back at once.
        let mapping = if rules.len() == self.group_rules.len() {
            match GroupMapping::from_rules(&rules) {
                Ok(mapping) => Some(mapping),
                Err(problems) => {
                    for problem in problems {
                        let field = match problem {
                            MappingError::BadRange(rule) => format!("group_rules[{rule}]"),
                            MappingError::Overlap { rule, .. } => format!("group_rules[{rule}]"),
                            MappingError::Uncovered(_) => "group_rules".into(),
                        };
                        errors.push((field, problem.to_string()));
                    }
                    None
                }
            }
        } else {
            None
        };
        match mapping {
            Some(mapping) if errors.is_empty() => Ok(Effective {
                thresholds: Thresholds {
                    non_customer_months: self.non_customer_months,
                    dormant_months: self.dormant_months,
                    share_window_months: self.share_window_months,
                    declining_share_percent: self.declining_share_percent,
                    new_days: i64::from(self.new_days),
                },
                mapping,
                settings: self,
            }),
            _ => Err(errors),
        }
    }
}

impl Default for Effective {
    fn default() -> Self {
        Settings::default()
            .validate()
            .expect("the default settings are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_fields_are_named() {
        let effective = Effective::default();
        assert_eq!(effective.mapping, GroupMapping::default());
        let mut bad = Settings {
            dormant_months: 12,
            non_customer_months: 12,
            rupture_multiple: 0.5,
            ..Settings::default()
        };
        bad.group_rules.pop();
        let errors = bad.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["non_customer_months", "rupture_multiple", "group_rules"]
        );
        assert!(
            errors[2].1.contains("no rule places the cells"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_lifecycle_window_longer_than_the_lookback_and_an_overlapping_rule_are_named() {
        let mut bad = Settings {
            lookback_years: 1,
            non_customer_months: 18,
            ..Settings::default()
        };
        bad.group_rules[7].r = [3, 5];
        let errors = bad.validate().unwrap_err();
        assert_eq!(
            errors,
            [
                (
                    "non_customer_months".to_owned(),
                    "must fit in the lookback window: at most 12 × lookback_years".to_owned()
                ),
                (
                    "group_rules[7]".to_owned(),
                    "places the cells [311, 312, 313, 314, 315], also placed by group_rules[4]"
                        .to_owned()
                ),
            ]
        );
        let fits = Settings {
            lookback_years: 2,
            non_customer_months: 18,
            ..Settings::default()
        };
        assert!(fits.validate().is_ok());
    }

    #[test]
    fn more_rules_than_cells_and_nul_characters_are_refused_up_front() {
        let mut bad = Settings::default();
        let rule = bad.group_rules[0].clone();
        bad.group_rules = vec![rule; 5000];
        bad.merchant_category = "fash\0ion".into();
        bad.own_merchant_ids = vec!["a\0".into()];
        let errors = bad.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            ["merchant_category", "own_merchant_ids[0]", "group_rules"]
        );
        assert_eq!(errors[2].1, "must have at most 125 rules (one per cell)");
        let many = Settings {
            own_merchant_ids: vec!["shop".into(); 1001],
            ..Settings::default()
        };
        assert_eq!(
            many.validate().unwrap_err(),
            [(
                "own_merchant_ids".to_owned(),
                "must have at most 1000 entries".to_owned()
            )]
        );
    }
}
