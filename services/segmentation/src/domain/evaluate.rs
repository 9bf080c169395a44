//! One customer's segments on a given day, from its features: the RFM group (against the tenant's current
//! boundaries), the lifecycle state, rupture, the K-means cluster and the tenant's custom rules; why it is in each;
//! and the first later day on which the answer can change with no new event (its due date).

use chrono::{Days, Months, NaiveDate};

use super::clusters::Clusters;
use super::groups::Group;
use super::lifecycle::{self, History, Lifecycle, ShareOfWallet};
use super::predictions::{self, Models};
use super::rfm::{Boundaries, RfmScore, RfmValues};
use super::rules::{Program, Subject};
use super::rupture;
use super::segments::{self, Family, SegmentId};
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
    /// The part of `monetary` spent on the first purchase day (the repeat spend is the rest).
    pub first_day_spend: i64,
    pub first_day: Option<NaiveDate>,
    pub last_day: Option<NaiveDate>,
    /// Distinct days with an eligible order.
    pub purchase_days: u32,
    /// Median gap between purchase days, with at least three of them.
    pub typical_gap: Option<f64>,
    /// Channel of the first eligible order (ingestion's `Channel`: 1 store, 2 web, 3 app; 0 without orders).
    pub first_channel: i16,
    /// Category of the first eligible order's largest line.
    pub first_category: Option<String>,
    pub birth_date: Option<NaiveDate>,
    /// Marketing consents granted, as bits: [`CONSENT_EMAIL`], [`CONSENT_SMS`], [`CONSENT_PUSH`].
    pub consent: u8,
    /// Last day with spend in the tenant's category within `non_customer_months`.
    pub category_day: Option<NaiveDate>,
    pub share: ShareOfWallet,
    /// First day on which a transaction enters the share-of-wallet windows or crosses one of their boundaries.
    pub share_due: Option<NaiveDate>,
    /// First day on which an eligible order placed ahead of the day the features were computed starts to count.
    pub next_order_day: Option<NaiveDate>,
    /// Day of the last engagement event (an app open, a product view…), none without any.
    pub last_engagement_day: Option<NaiveDate>,
    /// Engagement events received.
    pub engagements: i64,
}

pub const CONSENT_EMAIL: u8 = 1;
pub const CONSENT_SMS: u8 = 2;
pub const CONSENT_PUSH: u8 = 4;

/// A tenant's custom segment, compiled.
#[derive(Debug, Clone)]
pub struct CustomSegment {
    pub id: SegmentId,
    pub slug: String,
    pub program: std::sync::Arc<Program>,
}

/// Everything a tenant's evaluation depends on besides the customer.
#[derive(Debug, Clone, Default)]
pub struct Scoring {
    pub settings: Effective,
    /// None before the first recompute: nobody is in an RFM group or cluster yet.
    pub boundaries: Option<Boundaries>,
    /// None while clustering is off or before the first recompute with it on.
    pub clusters: Option<Clusters>,
    /// None before the first model fit.
    pub models: Option<Models>,
    pub custom: Vec<CustomSegment>,
    /// Deleted custom segments, by id: their history and exit events keep their names.
    pub retired: Vec<(SegmentId, String)>,
}

impl Scoring {
    /// The slug of any of the tenant's segments, deleted custom ones included.
    pub fn slug(&self, id: SegmentId) -> &str {
        segments::fixed_slug(id)
            .or_else(|| {
                self.custom
                    .iter()
                    .find(|c| c.id == id)
                    .map(|c| c.slug.as_str())
            })
            .or_else(|| {
                self.retired
                    .iter()
                    .find(|(r, _)| *r == id)
                    .map(|(_, s)| s.as_str())
            })
            .unwrap_or("unknown")
    }

    fn needs_predictions(&self) -> bool {
        self.models.is_some() && self.custom.iter().any(|c| c.program.needs_predictions)
    }
}

/// A customer's segments on one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub rfm: Option<RfmScore>,
    pub lifecycle: Option<Lifecycle>,
    pub overdue: bool,
    /// The K-means cluster (0-based).
    pub cluster: Option<usize>,
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

/// Evaluates one customer on `today` against the tenant's scoring.
pub fn evaluate(features: &Features, today: NaiveDate, scoring: &Scoring) -> Evaluation {
    let settings = &scoring.settings;
    let values = features.rfm_values(today);
    let rfm = values
        .zip(scoring.boundaries.as_ref())
        .map(|(v, b)| b.score(v));
    let mut state = lifecycle::classify(&features.history(), today, &settings.thresholds);
    if state == Some(Lifecycle::NonCustomer) && !category_spend_recent(features, today, settings) {
        state = None;
    }
    let overdue = overdue(features, today, settings).is_some_and(|r| r.overdue);
    // Clusters come with the boundaries of the same recompute: none before it.
    let cluster = values
        .filter(|_| scoring.boundaries.is_some())
        .zip(scoring.clusters.as_ref())
        .map(|(v, c)| c.assign(&v));
    let mut segments = Vec::with_capacity(4);
    if let Some(score) = rfm {
        segments.push(segments::group_segment(settings.mapping.group(score)));
    }
    if let Some(state) = state {
        segments.push(segments::lifecycle_segment(state));
    }
    if overdue {
        segments.push(segments::RUPTURE_OVERDUE);
    }
    if let Some(cluster) = cluster {
        segments.push(segments::cluster_segment(cluster));
    }
    let mut evaluation = Evaluation {
        rfm,
        lifecycle: state,
        overdue,
        cluster,
        segments,
        due: due(features, today, settings),
    };
    if !scoring.custom.is_empty() {
        let subject = subject(
            features,
            Some(&evaluation),
            today,
            scoring,
            scoring.needs_predictions(),
        );
        for custom in &scoring.custom {
            if custom.program.matches(&subject) == Ok(true) {
                evaluation.segments.push(custom.id);
            }
        }
    }
    evaluation.segments.sort_unstable();
    evaluation
}

/// What custom rules see of a customer: its features, its built-in evaluation (when given) and its predictions
/// (when asked for, and the tenant has models).
pub fn subject<'a>(
    features: &'a Features,
    evaluation: Option<&Evaluation>,
    today: NaiveDate,
    scoring: &'a Scoring,
    with_predictions: bool,
) -> Subject<'a> {
    let rfm = evaluation.and_then(|e| e.rfm);
    let rfm_group = rfm.and_then(|score| {
        segments::fixed_slug(segments::group_segment(
            scoring.settings.mapping.group(score),
        ))
    });
    Subject {
        features,
        today,
        rfm,
        rfm_group,
        lifecycle: evaluation.and_then(|e| e.lifecycle),
        cluster: evaluation
            .and_then(|e| e.cluster)
            .map(|c| segments::CLUSTER_SLUGS[c]),
        overdue: evaluation.is_some_and(|e| e.overdue),
        prediction: if with_predictions {
            scoring.models.as_ref().and_then(|models| {
                predictions::predict(
                    models,
                    features,
                    today,
                    &scoring.settings.settings.horizon(),
                )
            })
        } else {
            None
        },
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
    let candidates: [Option<NaiveDate>; 8] = [
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
        features.next_order_day,
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
    scoring: &Scoring,
) -> String {
    let s = &scoring.settings.settings;
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
    if let Some(cluster) = segments::segment_cluster(segment) {
        let name = scoring
            .clusters
            .as_ref()
            .and_then(|c| c.names.get(cluster))
            .map_or("", String::as_str);
        return format!(
            "nearest centroid: {name} (last order {} days ago, {} orders, {} spent)",
            since(features.last_day),
            features.frequency,
            features.monetary
        );
    }
    if let Some(custom) = scoring.custom.iter().find(|c| c.id == segment) {
        return format!(
            "rule holds: {}",
            describe(custom, features, evaluation, today, scoring)
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
        _ if segment == segments::RUPTURE_OVERDUE => overdue(features, today, &scoring.settings)
            .map(|r| r.reason)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// Why a customer left `segment`: what it is in now instead, in the same family, or the values that no longer
/// satisfy a custom rule.
pub fn exit_reason(
    segment: SegmentId,
    features: &Features,
    evaluation: &Evaluation,
    today: NaiveDate,
    scoring: &Scoring,
) -> String {
    let family = segments::family_of(segment);
    if family == Some(Family::Custom) {
        return match scoring.custom.iter().find(|c| c.id == segment) {
            Some(custom) => format!(
                "rule no longer holds: {}",
                describe(custom, features, evaluation, today, scoring)
            ),
            None => "segment deleted".into(),
        };
    }
    let now_in = evaluation
        .segments
        .iter()
        .find(|id| segments::family_of(**id) == family);
    match now_in {
        Some(id) => format!("moved to {}", scoring.slug(*id)),
        None => match family {
            Some(Family::RfmGroup | Family::Cluster) => {
                "no eligible order in the lookback window".into()
            }
            Some(Family::Rupture) => "bought again".into(),
            _ => "no longer in any lifecycle state".into(),
        },
    }
}

/// The values a custom rule names, for this customer.
fn describe(
    custom: &CustomSegment,
    features: &Features,
    evaluation: &Evaluation,
    today: NaiveDate,
    scoring: &Scoring,
) -> String {
    let with_predictions = custom.program.needs_predictions;
    custom.program.describe(&subject(
        features,
        Some(evaluation),
        today,
        scoring,
        with_predictions,
    ))
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
        let settings = Scoring::default();
        let features = buyer("2025-01-10", "2026-05-20", 4);
        let today = day("2026-11-19");
        let now = evaluate(&features, today, &settings);
        assert_eq!(now.lifecycle, Some(Lifecycle::Active));
        // Six months after the last order it turns dormant: that day is due, and on it the state has changed.
        assert_eq!(now.due, Some(day("2026-11-20")));
        let then = evaluate(&features, day("2026-11-20"), &settings);
        assert_eq!(then.lifecycle, Some(Lifecycle::Dormant));
        assert_eq!(
            then.due,
            Some(day("2027-05-20")),
            "then non-customer or nothing"
        );
    }

    #[test]
    fn rupture_is_due_on_the_first_overdue_day() {
        let settings = Scoring::default();
        let features = Features {
            typical_gap: Some(21.0),
            ..buyer("2026-06-01", "2026-08-03", 4)
        };
        let first = rupture::overdue_from(21.0, day("2026-08-03"), 2.5);
        assert_eq!(first, day("2026-08-03") + Days::new(53));
        let before = evaluate(&features, first.pred_opt().unwrap(), &settings);
        assert!(!before.segments.contains(&segments::RUPTURE_OVERDUE));
        assert_eq!(before.due, Some(first));
        let on = evaluate(&features, first, &settings);
        assert!(on.segments.contains(&segments::RUPTURE_OVERDUE));
        assert_eq!(
            reason(segments::RUPTURE_OVERDUE, &features, &on, first, &settings),
            "buys every 21 days, last order 53 days ago"
        );
    }

    #[test]
    fn rfm_group_follows_the_boundaries() {
        let settings = Scoring::default();
        let population: Vec<RfmValues> = (0..10)
            .map(|i| RfmValues {
                recency_days: i * 10,
                frequency: 10 - i,
                monetary: 1000,
            })
            .collect();
        let boundaries = Boundaries::of(&population).unwrap();
        let scored = Scoring {
            boundaries: Some(boundaries.clone()),
            ..Scoring::default()
        };
        let today = day("2026-11-23");
        let features = Features {
            frequency: 10,
            monetary: 1000,
            ..buyer("2026-01-01", "2026-11-23", 10)
        };
        let e = evaluate(&features, today, &scored);
        assert_eq!(e.rfm.map(RfmScore::code), Some(551));
        assert_eq!(e.segments, vec![5, 15], "loyal and active");
        // As days pass the recency score drops (the scheduled recompute re-scores it); the due date does not
        // depend on the boundaries.
        let later = day("2026-11-23") + Days::new(u64::from(boundaries.recency[3]));
        assert_eq!(
            evaluate(&features, later, &scored).rfm.map(|s| s.r),
            Some(4)
        );
        assert_eq!(e.due, evaluate(&features, today, &settings).due);
        assert_eq!(
            exit_reason(
                5,
                &Features::default(),
                &evaluate(&Features::default(), today, &scored),
                today,
                &scored
            ),
            "no eligible order in the lookback window"
        );
    }

    #[test]
    fn non_customers_need_recent_category_spend() {
        let settings = Scoring::default();
        let features = Features {
            customer_id: 7,
            category_day: Some(day("2026-01-15")),
            ..Features::default()
        };
        let e = evaluate(&features, day("2026-11-23"), &settings);
        assert_eq!(e.segments, vec![11]);
        assert_eq!(e.due, Some(day("2027-01-15")));
        assert!(
            evaluate(&features, day("2027-01-15"), &settings)
                .segments
                .is_empty()
        );
    }

    #[test]
    fn custom_rules_see_the_built_in_evaluation_and_explain_themselves() {
        let rule = |slug: &str, source: &str, id| CustomSegment {
            id,
            slug: slug.into(),
            program: crate::domain::rules::compile(source).unwrap().into(),
        };
        let scoring = Scoring {
            custom: vec![
                rule(
                    "active-web",
                    "lifecycle == \"active\" && first_order_channel == \"web\"",
                    1000,
                ),
                rule("big-spenders", "monetary > 1000000", 1001),
            ],
            ..Scoring::default()
        };
        let features = Features {
            first_channel: 2,
            ..buyer("2025-01-10", "2026-11-01", 4)
        };
        let today = day("2026-11-19");
        let e = evaluate(&features, today, &scoring);
        assert_eq!(e.segments, vec![15, 1000], "active and the first rule only");
        assert_eq!(
            reason(1000, &features, &e, today, &scoring),
            "rule holds: lifecycle = \"active\", first_order_channel = \"web\""
        );
        let later = day("2027-05-05");
        let dormant = evaluate(&features, later, &scoring);
        assert_eq!(dormant.segments, vec![12]);
        assert_eq!(
            exit_reason(1000, &features, &dormant, later, &scoring),
            "rule no longer holds: lifecycle = \"dormant\", first_order_channel = \"web\""
        );
        assert_eq!(scoring.slug(1001), "big-spenders");
        assert_eq!(scoring.slug(12), "lifecycle-dormant");
    }
}
