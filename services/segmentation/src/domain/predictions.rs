//! Per-customer predictions from a tenant's fitted models: how likely the customer still buys, how many purchases
//! to expect over the horizon, the expected value of a purchase, and the discounted value of the purchases expected
//! over the next months (as the `lifetimes` package computes them, so the figures can be checked against it).

use chrono::NaiveDate;

use super::bgnbd::{BgNbd, Days};
use super::evaluate::Features;
use super::gamma_gamma::GammaGamma;

/// A tenant's fitted models. Gamma-Gamma needs repeat customers and may be missing when BG/NBD is not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Models {
    pub bgnbd: BgNbd,
    pub gamma_gamma: Option<GammaGamma>,
}

/// What the predictions look ahead over (per tenant settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Horizon {
    /// Expected purchases are counted over this many days.
    pub purchase_days: u32,
    /// Lifetime value sums this many 30-day months.
    pub value_months: u32,
    /// Each month's value is discounted by (1 + rate)^month.
    pub monthly_discount: f64,
}

/// One customer's predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub days: Days,
    /// Mean spend per repeat purchase day, minor units (0 without repeat purchases).
    pub repeat_spend: f64,
    pub p_alive: f64,
    /// Purchase days expected over `Horizon::purchase_days`.
    pub expected_purchases: f64,
    /// Expected spend of a future purchase day, minor units (with a Gamma-Gamma fit).
    pub expected_order_value: Option<f64>,
    /// Discounted value of the purchases expected over `Horizon::value_months`, minor units.
    pub lifetime_value: Option<f64>,
}

/// The customer's repeat buying on `today` in the models' terms, and its mean spend per repeat purchase day; `None`
/// without an eligible order.
pub fn repeat_buying(features: &Features, today: NaiveDate) -> Option<(Days, f64)> {
    let first = features.first_day?;
    let last = features.last_day?;
    if features.purchase_days == 0 || today < last {
        return None;
    }
    let frequency = features.purchase_days - 1;
    let repeat_spend = if frequency > 0 {
        (features.monetary - features.first_day_spend) as f64 / f64::from(frequency)
    } else {
        0.0
    };
    Some((
        Days {
            frequency,
            recency: (last - first).num_days() as u32,
            age: (today - first).num_days() as u32,
        },
        repeat_spend,
    ))
}

/// Predictions for one customer on `today`; `None` without an eligible order.
pub fn predict(
    models: &Models,
    features: &Features,
    today: NaiveDate,
    horizon: &Horizon,
) -> Option<Prediction> {
    let (days, repeat_spend) = repeat_buying(features, today)?;
    Some(predict_days(models, days, repeat_spend, horizon))
}

/// Predictions from a repeat-buying summary.
pub fn predict_days(
    models: &Models,
    days: Days,
    repeat_spend: f64,
    horizon: &Horizon,
) -> Prediction {
    let summary = days.summary();
    let bg = &models.bgnbd;
    let expected_order_value = models
        .gamma_gamma
        .map(|g| g.expected_order_value(days.frequency, repeat_spend));
    Prediction {
        days,
        repeat_spend,
        p_alive: bg.p_alive(&summary),
        expected_purchases: bg.expected_purchases(&summary, f64::from(horizon.purchase_days)),
        expected_order_value,
        lifetime_value: expected_order_value.map(|value| {
            let mut previous = 0.0;
            let mut total = 0.0;
            for month in 1..=horizon.value_months {
                let cumulative = bg.expected_purchases(&summary, 30.0 * f64::from(month));
                total += value * (cumulative - previous)
                    / (1.0 + horizon.monthly_discount).powi(month as i32);
                previous = cumulative;
            }
            total
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn the_summary_counts_purchase_days_and_repeat_spend() {
        // Three purchase days (the first worth 30.00), 100.00 in all: two repeat days averaging 35.00.
        let features = Features {
            frequency: 4,
            monetary: 10_000,
            first_day_spend: 3_000,
            first_day: Some(day("2026-01-01")),
            last_day: Some(day("2026-03-02")),
            purchase_days: 3,
            ..Features::default()
        };
        let (days, spend) = repeat_buying(&features, day("2026-04-01")).unwrap();
        assert_eq!(
            days,
            Days {
                frequency: 2,
                recency: 60,
                age: 90
            }
        );
        assert_eq!(spend, 3_500.0);
        assert_eq!(repeat_buying(&Features::default(), day("2026-04-01")), None);
    }

    #[test]
    fn lifetime_value_discounts_each_month() {
        let models = Models {
            bgnbd: BgNbd {
                r: 0.5,
                alpha: 30.0,
                a: 0.8,
                b: 2.5,
            },
            gamma_gamma: Some(GammaGamma {
                p: 6.0,
                q: 4.0,
                v: 15.0,
            }),
        };
        let days = Days {
            frequency: 4,
            recency: 200,
            age: 220,
        };
        let undiscounted = Horizon {
            purchase_days: 360,
            value_months: 12,
            monthly_discount: 0.0,
        };
        let p = predict_days(&models, days, 2_000.0, &undiscounted);
        // Without a discount the value is the expected purchases over 360 days times the expected order value.
        let plain = p.expected_purchases * p.expected_order_value.unwrap();
        assert!((p.lifetime_value.unwrap() - plain).abs() < 1e-6 * plain);
        let discounted = predict_days(
            &models,
            days,
            2_000.0,
            &Horizon {
                monthly_discount: 0.01,
                ..undiscounted
            },
        );
        assert!(discounted.lifetime_value.unwrap() < p.lifetime_value.unwrap());
        assert!(0.0 < p.p_alive && p.p_alive <= 1.0);
    }
}
