//! Lifecycle states (the cashback-app case), exactly as docs/segmentation.md defines them. A customer is in at most
//! one state, so offers bound to states never overlap.

use chrono::{Months, NaiveDate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    /// No eligible order for `non_customer_months` (or never), but spend in the tenant's category seen in that time.
    NonCustomer,
    /// Last eligible order between `dormant_months` and `non_customer_months` ago.
    Dormant,
    /// Buying, but the tenant's share of the customer's category spend fell to `declining_share_percent` or less of
    /// what it was in the window before.
    Declining,
    /// First eligible order within `new_days`.
    New,
    /// Buying, and none of the above.
    Active,
}

impl Lifecycle {
    /// The state's name in rules: its segment id without the `lifecycle-` prefix.
    pub fn name(self) -> &'static str {
        match self {
            Lifecycle::NonCustomer => "non-customer",
            Lifecycle::Dormant => "dormant",
            Lifecycle::Declining => "declining",
            Lifecycle::New => "new",
            Lifecycle::Active => "active",
        }
    }
}

/// Per-tenant thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub non_customer_months: u32,
    pub dormant_months: u32,
    /// Length of each of the two windows whose shares of wallet are compared.
    pub share_window_months: u32,
    /// Declining when the recent share is at most this percentage of the earlier share.
    pub declining_share_percent: u32,
    pub new_days: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            non_customer_months: 12,
            dormant_months: 6,
            share_window_months: 6,
            declining_share_percent: 70,
            new_days: 90,
        }
    }
}

/// Category spend (minor units) in the last window and in the window before, at the tenant and everywhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareOfWallet {
    pub tenant_recent: i64,
    pub all_recent: i64,
    pub tenant_before: i64,
    pub all_before: i64,
}

impl ShareOfWallet {
    /// Whether the recent share is at most `percent` % of the earlier one. Compared in integers (cross-multiplied),
    /// so no rounding decides a boundary case. Undefined shares (no category spend in a window, or no share before)
    /// are never a decline.
    fn declined_to(&self, percent: u32) -> bool {
        if self.all_recent <= 0 || self.all_before <= 0 || self.tenant_before <= 0 {
            return false;
        }
        // tenant_recent / all_recent <= percent/100 × tenant_before / all_before
        i128::from(self.tenant_recent) * i128::from(self.all_before) * 100
            <= i128::from(percent) * i128::from(self.tenant_before) * i128::from(self.all_recent)
    }
}

/// What classification needs to know about one customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub first_order: Option<NaiveDate>,
    pub last_order: Option<NaiveDate>,
    /// Whether market transactions show spend in the tenant's category within `non_customer_months`.
    pub category_spend_seen: bool,
    pub share: ShareOfWallet,
}

/// The customer's state on `today`; `None` when nothing puts it in one (never bought here, no category spend seen).
pub fn classify(history: &History, today: NaiveDate, t: &Thresholds) -> Option<Lifecycle> {
    // The rule of the windows and the due dates: an order counts for N months until the day its N-month mark
    // names (31 August's six-month mark is 28 February).
    let bought_within = |months: u32| {
        history.last_order.is_some_and(|last| {
            last.checked_add_months(Months::new(months))
                .is_none_or(|mark| mark > today)
        })
    };
    if !bought_within(t.non_customer_months) {
        return history
            .category_spend_seen
            .then_some(Lifecycle::NonCustomer);
    }
    if !bought_within(t.dormant_months) {
        return Some(Lifecycle::Dormant);
    }
    if history.share.declined_to(t.declining_share_percent) {
        return Some(Lifecycle::Declining);
    }
    match history.first_order {
        Some(first) if (today - first).num_days() < t.new_days => Some(Lifecycle::New),
        _ => Some(Lifecycle::Active),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn history(
        first: Option<&str>,
        last: Option<&str>,
        seen: bool,
        share: ShareOfWallet,
    ) -> History {
        History {
            first_order: first.map(day),
            last_order: last.map(day),
            category_spend_seen: seen,
            share,
        }
    }

    #[test]
    fn a_month_end_order_turns_dormant_on_the_day_its_mark_names() {
        let t = Thresholds::default();
        let after = |last: &str, today: &str| {
            classify(
                &history(
                    Some("2025-01-01"),
                    Some(last),
                    false,
                    ShareOfWallet::default(),
                ),
                day(today),
                &t,
            )
        };
        // 31 August's six-month mark is 28 February: the due date the evaluation sets for it.
        assert_eq!(after("2026-08-31", "2027-02-27"), Some(Lifecycle::Active));
        assert_eq!(after("2026-08-31", "2027-02-28"), Some(Lifecycle::Dormant));
        // And its twelve-month mark 31 August; a leap day's is 28 February.
        assert_eq!(after("2026-08-31", "2027-08-30"), Some(Lifecycle::Dormant));
        assert_eq!(after("2026-08-31", "2027-08-31"), None);
        assert_eq!(after("2028-02-29", "2029-02-28"), None);
    }

    #[test]
    fn each_state_at_its_boundaries() {
        let today = day("2026-11-23");
        let t = Thresholds::default();
        let none = ShareOfWallet::default();
        let classify = |h: History| classify(&h, today, &t);
        assert_eq!(
            classify(history(None, None, true, none)),
            Some(Lifecycle::NonCustomer)
        );
        assert_eq!(
            classify(history(None, None, false, none)),
            None,
            "nothing known"
        );
        assert_eq!(
            classify(history(Some("2020-01-01"), Some("2025-11-23"), true, none)),
            Some(Lifecycle::NonCustomer),
            "exactly 12 months"
        );
        assert_eq!(
            classify(history(Some("2020-01-01"), Some("2025-11-24"), true, none)),
            Some(Lifecycle::Dormant)
        );
        assert_eq!(
            classify(history(Some("2020-01-01"), Some("2026-05-23"), false, none)),
            Some(Lifecycle::Dormant),
            "exactly 6 months"
        );
        assert_eq!(
            classify(history(Some("2020-01-01"), Some("2026-05-24"), false, none)),
            Some(Lifecycle::Active)
        );
        assert_eq!(
            classify(history(Some("2026-09-01"), Some("2026-11-01"), false, none)),
            Some(Lifecycle::New)
        );
    }

    #[test]
    fn declining_means_the_share_fell_to_seventy_percent_or_less() {
        let today = day("2026-11-23");
        let t = Thresholds::default();
        let buying = |share| history(Some("2020-01-01"), Some("2026-11-01"), true, share);
        // Before: 50 % of 1 000. Recently: 35 % of 2 000, exactly 70 % of the earlier share.
        let at_limit = ShareOfWallet {
            tenant_recent: 700,
            all_recent: 2_000,
            tenant_before: 500,
            all_before: 1_000,
        };
        assert_eq!(
            classify(&buying(at_limit), today, &t),
            Some(Lifecycle::Declining)
        );
        let just_above = ShareOfWallet {
            tenant_recent: 701,
            ..at_limit
        };
        assert_eq!(
            classify(&buying(just_above), today, &t),
            Some(Lifecycle::Active)
        );
        let no_share_before = ShareOfWallet {
            tenant_before: 0,
            ..at_limit
        };
        assert_eq!(
            classify(&buying(no_share_before), today, &t),
            Some(Lifecycle::Active)
        );
        // Dormancy wins over a declining share: a customer is in one state at a time.
        let dormant = history(Some("2020-01-01"), Some("2026-01-01"), true, at_limit);
        assert_eq!(classify(&dormant, today, &t), Some(Lifecycle::Dormant));
    }
}
