//! Ruptures in a customer's buying rhythm, exactly as docs/segmentation.md defines them.

use chrono::NaiveDate;

/// A customer's rhythm and whether it is broken.
#[derive(Debug, Clone, PartialEq)]
pub struct Rhythm {
    /// Median gap between distinct purchase days.
    pub typical_gap_days: f64,
    pub days_since_last: i64,
    /// Whether the days since the last purchase exceed `multiple` × the typical gap.
    pub overdue: bool,
    /// Plain words, for explanations: "buys every 21 days, last order 63 days ago".
    pub reason: String,
}

/// The median gap between consecutive distinct purchase days (the mean of the two middle gaps when their number is
/// even) of a customer with `orders` orders; `None` with fewer than three orders, or all of them on one day.
pub fn typical_gap(purchase_days: &[NaiveDate], orders: u32) -> Option<f64> {
    let mut days = purchase_days.to_vec();
    days.sort_unstable();
    days.dedup();
    if orders < 3 || days.len() < 2 {
        return None;
    }
    let mut gaps: Vec<i64> = days.windows(2).map(|w| (w[1] - w[0]).num_days()).collect();
    gaps.sort_unstable();
    let middle = gaps.len() / 2;
    Some(if gaps.len() % 2 == 1 {
        gaps[middle] as f64
    } else {
        (gaps[middle - 1] + gaps[middle]) as f64 / 2.0
    })
}

/// The rhythm of a customer whose typical gap is known, on `today`; `multiple` is the tenant's threshold.
pub fn assess(
    typical_gap_days: f64,
    last_day: NaiveDate,
    today: NaiveDate,
    multiple: f64,
) -> Rhythm {
    let days_since_last = (today - last_day).num_days();
    Rhythm {
        typical_gap_days,
        days_since_last,
        overdue: days_since_last as f64 > threshold(multiple, typical_gap_days),
        reason: format!(
            "buys every {} days, last order {days_since_last} days ago",
            typical_gap_days.round() as i64
        ),
    }
}

/// The first day on which a customer with this rhythm is overdue.
pub fn overdue_from(typical_gap_days: f64, last_day: NaiveDate, multiple: f64) -> NaiveDate {
    // Overdue when days > multiple × gap, i.e. from floor(multiple × gap) + 1 days after the last purchase.
    last_day + chrono::Days::new(threshold(multiple, typical_gap_days).floor() as u64 + 1)
}

/// `multiple` × `gap`, as the decimal figures the tenant wrote mean it: rounded to a millionth, so that 1.4 × 45 is
/// 63 and not the 62.999… binary floating point makes of it.
fn threshold(multiple: f64, gap: f64) -> f64 {
    (multiple * gap * 1e6).round() / 1e6
}

/// The rhythm of a customer whose orders were placed on `order_days` (one day per order), `None` with fewer than
/// three orders or all on one day; `multiple` is the tenant's threshold (for example 2.5).
pub fn rhythm(order_days: &[NaiveDate], today: NaiveDate, multiple: f64) -> Option<Rhythm> {
    let gap = typical_gap(order_days, order_days.len() as u32)?;
    let last = *order_days.iter().max()?;
    Some(assess(gap, last, today, multiple))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_multiple_that_reaches_the_days_exactly_is_not_yet_overdue() {
        // 1.4 × 45 is 62.99999999999999 in binary floating point.
        let last = day("2026-01-01");
        assert!(!assess(45.0, last, last + chrono::Days::new(63), 1.4).overdue);
        assert!(assess(45.0, last, last + chrono::Days::new(64), 1.4).overdue);
        assert_eq!(overdue_from(45.0, last, 1.4), last + chrono::Days::new(64));
    }

    #[test]
    fn a_three_weekly_buyer_silent_for_nine_weeks_is_overdue() {
        let days = [
            day("2026-06-01"),
            day("2026-06-22"),
            day("2026-07-13"),
            day("2026-08-03"),
            day("2026-08-03"),
        ];
        let r = rhythm(&days, day("2026-10-05"), 2.5).unwrap();
        assert_eq!(r.typical_gap_days, 21.0);
        assert_eq!(r.days_since_last, 63);
        assert!(r.overdue);
        assert_eq!(r.reason, "buys every 21 days, last order 63 days ago");
        assert!(!rhythm(&days, day("2026-08-30"), 2.5).unwrap().overdue);
    }

    #[test]
    fn the_median_ignores_one_long_break_and_three_orders_make_a_rhythm() {
        let days = [
            day("2026-01-01"),
            day("2026-01-11"),
            day("2026-06-01"),
            day("2026-06-11"),
            day("2026-06-21"),
        ];
        assert_eq!(
            rhythm(&days, day("2026-06-21"), 2.0)
                .unwrap()
                .typical_gap_days,
            10.0
        );
        let even = [day("2026-01-01"), day("2026-01-11"), day("2026-01-31")];
        assert_eq!(
            rhythm(&even, day("2026-02-01"), 2.0)
                .unwrap()
                .typical_gap_days,
            15.0
        );
        // Three orders on two days: one gap, four days.
        let basket = [day("2026-01-01"), day("2026-01-01"), day("2026-01-05")];
        assert_eq!(
            rhythm(&basket, day("2026-02-01"), 2.0)
                .unwrap()
                .typical_gap_days,
            4.0
        );
        assert!(
            rhythm(&basket[1..], day("2026-02-01"), 2.0).is_none(),
            "two orders"
        );
        assert!(
            rhythm(&[basket[0]; 3], day("2026-02-01"), 2.0).is_none(),
            "one day"
        );
    }
}
