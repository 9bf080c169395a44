//! One customer's segments on a given day, from its features: the RFM group (against the tenant's current
//! boundaries), the lifecycle state and rupture; why it is in each; and the first later day on which the answer can
//! change with no new event (its due date).

use chrono::{Days, Months, NaiveDate};

use super::groups::Group;
use super::lifecycle::{self, History, Lifecycle, ShareOfWallet};
use super::rfm::{Boundaries, RfmScore, RfmValues};
use super::rupture;
use super::segments::{self, SegmentId};
use super::settings::Effective;

/// A customer's scoring inputs, computed from its eligible orders in the lookback window and its market
/// transactions, as of the day they were refreshed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    pub customer_id: i64,
    /// Eligible orders.
    pub frequency: u32,
    /// Their total in minor units.
    pub monetary: i64,
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
    /// Distinct days with an eligible order.
    pub purchase_days: u32,
    /// Median gap between purchase days, with at least three of them.
    pub typical_gap: Option<f64>,
    /// Last day with spend in the tenant's category within `non_customer_months`.
    pub category_day: Option<NaiveDate>,
    pub share: ShareOfWallet,
    /// First day on which a transaction crosses a share-of-wallet window boundary.
    pub share_due: Option<NaiveDate>,
}

/// A customer's segments on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub rfm: Option<RfmScore>,
    pub lifecycle: Option<Lifecycle>,
    /// Sorted segment ids.
    pub segments: Vec<SegmentId>,
    /// The first day after `today` on which the evaluation may differ with no new event.
    pub due: Option<NaiveDate>,
}

impl Features {
    /// RFM values on `today`, when the customer has an eligible order.
    pub fn rfm_values(&self, today: NaiveDate) -> Option<RfmValues> {
        let last = self.last_day?;
        (self.frequency > 0).then(|| RfmValues {
            recency_days: (today - last).num_days().max(0) as u32,
            frequency: self.frequency,
            monetary: self.monetary,
        })
    }

    fn history(&self) -> History {
        History {
            first_order: self.first_day,
            last_order: self.last_day,
            category_spend_seen: self.category_day.is_some(),
            share: self.share,
        }
    }
}

/// Evaluates one customer on `today`. `boundaries` are the tenant's current RFM boundaries (none before the first
/// recompute: nobody is in an RFM group yet).
pub fn evaluate(
    features: &Features,
    today: NaiveDate,
    settings: &Effective,
    boundaries: Option<&Boundaries>,
) -> Evaluation {
    let values = features.rfm_values(today);
    let rfm = values.zip(boundaries).map(|(v, b)| b.score(v));
    let mut state = lifecycle::classify(&features.history(), today, &settings.thresholds);
    if state == Some(Lifecycle::NonCustomer) && !category_spend_recent(features, today, settings) {
        state = None;
    }
    let overdue = overdue(features, today, settings).is_some_and(|r| r.overdue);
    let mut segments = Vec::with_capacity(3);
    if let Some(score) = rfm {
        segments.push(segments::group_segment(settings.mapping.group(score)));
    }
    if let Some(state) = state {
        segments.push(segments::lifecycle_segment(state));
    }
    if overdue {
        segments.push(segments::RUPTURE_OVERDUE);
    }
    segments.sort_unstable();
    Evaluation {
        rfm,
        lifecycle: state,
        segments,
        due: due(features, today, settings),
    }
}

fn months_after(day: NaiveDate, months: u32) -> Option<NaiveDate> {
    day.checked_add_months(Months::new(months))
}

/// Category spend counts for non-customers only within `non_customer_months`.
fn category_spend_recent(features: &Features, today: NaiveDate, settings: &Effective) -> bool {
    features.category_day.is_some_and(|day| {
        months_after(day, settings.settings.non_customer_months).is_some_and(|end| end > today)
    })
}

fn overdue(features: &Features, today: NaiveDate, settings: &Effective) -> Option<rupture::Rhythm> {
    let gap = features.typical_gap?;
    let last = features.last_day?;
    Some(rupture::assess(
        gap,
        last,
        today,
        settings.settings.rupture_multiple,
    ))
}

/// The first day after `today` on which any input of the evaluation crosses a threshold by time alone.
///
/// RFM scores are left out: they are relative to the population, and the recency score drifts as days pass for
/// everyone at once, so the scheduled full recompute (`recompute_interval_minutes`) re-scores them. Putting the
/// recency cuts here would move every customer's due date whenever the boundaries move.
fn due(features: &Features, today: NaiveDate, settings: &Effective) -> Option<NaiveDate> {
    let s = &settings.settings;
    let last = features.last_day;
    let first = features.first_day;
    // Fixed-size, so evaluating a million customers allocates nothing here.
    let candidates: [Option<NaiveDate>; 7] = [
        last.and_then(|l| months_after(l, s.dormant_months)),
        last.and_then(|l| months_after(l, s.non_customer_months)),
        last.zip(features.typical_gap)
            .map(|(l, gap)| rupture::overdue_from(gap, l, s.rupture_multiple)),
        first.and_then(|f| f.checked_add_days(Days::new(u64::from(s.new_days)))),
        // The oldest eligible order leaves the lookback window.
        first.and_then(|f| months_after(f, s.lookback_years * 12)),
        features
            .category_day
            .and_then(|d| months_after(d, s.non_customer_months)),
        features.share_due,
    ];
    candidates
        .into_iter()
        .flatten()
        .filter(|day| *day > today)
        .min()
}

/// Why a customer is in `segment` on `today`, in plain words.
pub fn reason(
    segment: SegmentId,
    features: &Features,
    evaluation: &Evaluation,
    today: NaiveDate,
    settings: &Effective,
) -> String {
    let s = &settings.settings;
    let since = |day: Option<NaiveDate>| day.map_or(0, |d| (today - d).num_days());
    if let Some(group) = segments::segment_group(segment) {
        let score = evaluation.rfm.map_or(0, RfmScore::code);
        return format!(
            "RFM {score} ({}): last order {} days ago, {} orders, {} spent (minor units)",
            group_name(group),
            since(features.last_day),
            features.frequency,
            features.monetary
        );
    }
    match evaluation.lifecycle {
        Some(state) if segments::lifecycle_segment(state) == segment => match state {
            Lifecycle::NonCustomer => format!(
                "no order here in {} months, category spend seen {} days ago",
                s.non_customer_months,
                since(features.category_day)
            ),
            Lifecycle::Dormant => format!(
                "last order {} days ago (dormant after {} months)",
                since(features.last_day),
                s.dormant_months
            ),
            Lifecycle::Declining => format!(
                "share of category spend fell from {} to {} (declining at {}% of the window before)",
                percent(features.share.tenant_before, features.share.all_before),
                percent(features.share.tenant_recent, features.share.all_recent),
                s.declining_share_percent
            ),
            Lifecycle::New => format!("first order {} days ago", since(features.first_day)),
            Lifecycle::Active => format!("last order {} days ago", since(features.last_day)),
        },
        _ if segment == segments::RUPTURE_OVERDUE => overdue(features, today, settings)
            .map(|r| r.reason)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Why a customer left `segment`: what it is in now instead, in the same family.
pub fn exit_reason(segment: SegmentId, evaluation: &Evaluation) -> String {
    let family = segments::by_id(segment).map(|def| def.family);
    let now_in = evaluation
        .segments
        .iter()
        .find(|id| segments::by_id(**id).map(|def| def.family) == family);
    match now_in {
        Some(id) => format!("moved to {}", segments::slug(*id)),
        None => match family {
            Some(segments::Family::RfmGroup) => "no eligible order in the lookback window".into(),
            Some(segments::Family::Rupture) => "bought again".into(),
            _ => "no longer in any lifecycle state".into(),
        },
    }
}

fn group_name(group: Group) -> &'static str {
    segments::by_id(segments::group_segment(group)).map_or("", |def| def.display_name)
}

fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        return "n/a".into();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn buyer(first: &str, last: &str, frequency: u32) -> Features {
        Features {
            customer_id: 1,
            frequency,
            monetary: 10_000 * i64::from(frequency),
            first_day: Some(day(first)),
            last_day: Some(day(last)),
            purchase_days: frequency,
            ..Features::default()
        }
    }

    #[test]
    fn the_due_date_is_the_day_the_state_changes() {
        let settings = Effective::default();
        let features = buyer("2025-01-10", "2026-05-20", 4);
        let today = day("2026-11-19");
        let now = evaluate(&features, today, &settings, None);
        assert_eq!(now.lifecycle, Some(Lifecycle::Active));
        // Six months after the last order it turns dormant: that day is due, and on it the state has changed.
        assert_eq!(now.due, Some(day("2026-11-20")));
        let then = evaluate(&features, day("2026-11-20"), &settings, None);
        assert_eq!(then.lifecycle, Some(Lifecycle::Dormant));
        assert_eq!(
            then.due,
            Some(day("2027-05-20")),
            "then non-customer or nothing"
        );
    }

    #[test]
    fn rupture_is_due_on_the_first_overdue_day() {
        let settings = Effective::default();
        let features = Features {
            typical_gap: Some(21.0),
            ..buyer("2026-06-01", "2026-08-03", 4)
        };
        let first = rupture::overdue_from(21.0, day("2026-08-03"), 2.5);
        assert_eq!(first, day("2026-08-03") + Days::new(53));
        let before = evaluate(&features, first.pred_opt().unwrap(), &settings, None);
        assert!(!before.segments.contains(&segments::RUPTURE_OVERDUE));
        assert_eq!(before.due, Some(first));
        let on = evaluate(&features, first, &settings, None);
        assert!(on.segments.contains(&segments::RUPTURE_OVERDUE));
        assert_eq!(
            reason(segments::RUPTURE_OVERDUE, &features, &on, first, &settings),
            "buys every 21 days, last order 53 days ago"
        );
    }

    #[test]
    fn rfm_group_follows_the_boundaries() {
        let settings = Effective::default();
        let population: Vec<RfmValues> = (0..10)
            .map(|i| RfmValues {
                recency_days: i * 10,
                frequency: 10 - i,
                monetary: 1000,
            })
            .collect();
        let boundaries = Boundaries::of(&population).unwrap();
        let today = day("2026-11-23");
        let features = Features {
            frequency: 10,
            monetary: 1000,
            ..buyer("2026-01-01", "2026-11-23", 10)
        };
        let e = evaluate(&features, today, &settings, Some(&boundaries));
        assert_eq!(e.rfm.map(RfmScore::code), Some(551));
        assert_eq!(e.segments, vec![5, 15], "loyal and active");
        // As days pass the recency score drops (the scheduled recompute re-scores it); the due date does not
        // depend on the boundaries.
        let later = day("2026-11-23") + Days::new(u64::from(boundaries.recency[3]));
        assert_eq!(
            evaluate(&features, later, &settings, Some(&boundaries))
                .rfm
                .map(|s| s.r),
            Some(4)
        );
        assert_eq!(e.due, evaluate(&features, today, &settings, None).due);
        assert_eq!(
            exit_reason(
                5,
                &evaluate(&Features::default(), today, &settings, Some(&boundaries))
            ),
            "no eligible order in the lookback window"
        );
    }

    #[test]
    fn non_customers_need_recent_category_spend() {
        let settings = Effective::default();
        let features = Features {
            customer_id: 7,
            category_day: Some(day("2026-01-15")),
            ..Features::default()
        };
        let e = evaluate(&features, day("2026-11-23"), &settings, None);
        assert_eq!(e.segments, vec![11]);
        assert_eq!(e.due, Some(day("2027-01-15")));
        assert!(
            evaluate(&features, day("2027-01-15"), &settings, None)
                .segments
                .is_empty()
        );
    }
}
