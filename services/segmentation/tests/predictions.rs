//! The prediction models against an independent implementation. `predictions/orders.csv` holds the eligible orders
//! of a synthetic retailer (`boomerang-synthetic`, seed 7, as of 2026-06-30); `predictions/reference.py` fitted
//! BG/NBD and Gamma-Gamma to them with the Python `lifetimes` package and wrote `predictions/reference.json`.
//! These tests summarise the same orders, fit the same models with Boomerang's code, and compare.
//!
//! To regenerate after changing the synthetic retailer: `BOOMERANG_WRITE_REFERENCE_DATA=1 cargo nextest run -p
//! boomerang-segmentation --test predictions`, then run `reference.py` as its docstring says.

use std::collections::BTreeMap;
use std::path::PathBuf;

use boomerang_segmentation::domain::bgnbd::{self, BgNbd, Days};
use boomerang_segmentation::domain::evaluate::Features;
use boomerang_segmentation::domain::gamma_gamma::{self, GammaGamma};
use boomerang_segmentation::domain::predictions::{self, Horizon, Models};
use boomerang_synthetic::{Retailer, Status};
use chrono::{NaiveDate, TimeZone, Utc};

const AS_OF: &str = "2026-06-30";

fn data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/predictions")
        .join(file)
}

/// The eligible orders of the reference retailer as `customer_id,date,amount_minor`.
fn synthetic_orders() -> String {
    let retailer = Retailer {
        seed: 7,
        customers: 1_000,
        orders: 8_000,
        now: Utc.with_ymd_and_hms(2026, 6, 30, 0, 0, 0).unwrap(),
        years: 4,
    };
    let mut csv = String::from("customer_id,date,amount_minor\n");
    for order in retailer.orders() {
        if matches!(order.status, Status::Paid | Status::PartiallyPaid) {
            let customer: u64 = order.customer_id[1..].parse().unwrap();
            csv.push_str(&format!(
                "{},{},{}\n",
                customer + 1,
                order.placed_at.date_naive(),
                order.amount_minor
            ));
        }
    }
    csv
}

/// Each customer's features from the orders, as segmentation's feature query computes them.
fn features(orders: &str) -> BTreeMap<i64, Features> {
    let mut by_customer: BTreeMap<i64, BTreeMap<NaiveDate, i64>> = BTreeMap::new();
    let mut counts: BTreeMap<i64, u32> = BTreeMap::new();
    for line in orders.lines().skip(1) {
        let mut fields = line.split(',');
        let customer: i64 = fields.next().unwrap().parse().unwrap();
        let day: NaiveDate = fields.next().unwrap().parse().unwrap();
        let amount: i64 = fields.next().unwrap().parse().unwrap();
        *by_customer
            .entry(customer)
            .or_default()
            .entry(day)
            .or_default() += amount;
        *counts.entry(customer).or_default() += 1;
    }
    by_customer
        .into_iter()
        .map(|(customer, days)| {
            let (first, first_spend) = days.first_key_value().map(|(d, s)| (*d, *s)).unwrap();
            let last = *days.last_key_value().unwrap().0;
            (
                customer,
                Features {
                    customer_id: customer,
                    frequency: counts[&customer],
                    monetary: days.values().sum(),
                    first_day_spend: first_spend,
                    first_day: Some(first),
                    last_day: Some(last),
                    purchase_days: days.len() as u32,
                    ..Features::default()
                },
            )
        })
        .collect()
}

struct Reference {
    json: serde_json::Value,
}

impl Reference {
    fn load() -> Self {
        let text = std::fs::read_to_string(data("reference.json")).expect("reference.json");
        Self {
            json: serde_json::from_str(&text).unwrap(),
        }
    }

    fn get(&self, model: &str, field: &str) -> f64 {
        self.json[model][field].as_f64().unwrap()
    }

    fn models(&self) -> Models {
        Models {
            bgnbd: BgNbd {
                r: self.get("bgnbd", "r"),
                alpha: self.get("bgnbd", "alpha"),
                a: self.get("bgnbd", "a"),
                b: self.get("bgnbd", "b"),
            },
            gamma_gamma: Some(GammaGamma {
                p: self.get("gamma_gamma", "p"),
                q: self.get("gamma_gamma", "q"),
                v: self.get("gamma_gamma", "v"),
            }),
        }
    }

    fn predictions(&self) -> &Vec<serde_json::Value> {
        self.json["predictions"].as_array().unwrap()
    }
}

fn close(ours: f64, theirs: f64, relative: f64) -> bool {
    (ours - theirs).abs() <= relative * theirs.abs().max(1e-12)
}

const HORIZON: Horizon = Horizon {
    purchase_days: 90,
    value_months: 12,
    monthly_discount: 0.01,
};

#[test]
fn the_reference_data_is_the_synthetic_retailer() {
    let orders = synthetic_orders();
    if std::env::var_os("BOOMERANG_WRITE_REFERENCE_DATA").is_some() {
        std::fs::write(data("orders.csv"), &orders).unwrap();
    }
    let stored = std::fs::read_to_string(data("orders.csv")).expect("orders.csv");
    assert!(
        stored == orders,
        "orders.csv is not what boomerang-synthetic generates; regenerate it (see this file's header)"
    );
}

#[test]
fn summaries_are_the_ones_lifetimes_computes() {
    let reference = Reference::load();
    let today: NaiveDate = AS_OF.parse().unwrap();
    let features = features(&std::fs::read_to_string(data("orders.csv")).unwrap());
    assert_eq!(features.len(), reference.predictions().len());
    for row in reference.predictions() {
        let customer = row["customer_id"].as_i64().unwrap();
        let (days, spend) = predictions::repeat_buying(&features[&customer], today).unwrap();
        assert_eq!(
            (days.frequency, days.recency, days.age),
            (
                row["frequency"].as_u64().unwrap() as u32,
                row["recency"].as_u64().unwrap() as u32,
                row["T"].as_u64().unwrap() as u32
            ),
            "customer {customer}"
        );
        assert!(
            close(spend, row["monetary_value"].as_f64().unwrap(), 1e-12),
            "customer {customer}: {spend}"
        );
    }
}

#[test]
fn predictions_from_the_same_parameters_agree() {
    // The formulas alone: lifetimes' parameters in, lifetimes' per-customer predictions out.
    let reference = Reference::load();
    let models = reference.models();
    for row in reference.predictions() {
        let days = Days {
            frequency: row["frequency"].as_u64().unwrap() as u32,
            recency: row["recency"].as_u64().unwrap() as u32,
            age: row["T"].as_u64().unwrap() as u32,
        };
        let p = predictions::predict_days(
            &models,
            days,
            row["monetary_value"].as_f64().unwrap(),
            &HORIZON,
        );
        let customer = &row["customer_id"];
        for (name, ours, field) in [
            ("P(alive)", p.p_alive, "p_alive"),
            (
                "expected purchases",
                p.expected_purchases,
                "expected_purchases_90",
            ),
            (
                "expected order value",
                p.expected_order_value.unwrap(),
                "expected_order_value",
            ),
            ("lifetime value", p.lifetime_value.unwrap(), "clv_12_months"),
        ] {
            let theirs = row[field].as_f64().unwrap();
            assert!(
                close(ours, theirs, 1e-8),
                "customer {customer}: {name} {ours} against {theirs}"
            );
        }
    }
}

#[test]
fn fits_agree_with_lifetimes() {
    let reference = Reference::load();
    let today: NaiveDate = AS_OF.parse().unwrap();
    let features = features(&std::fs::read_to_string(data("orders.csv")).unwrap());
    let summaries: Vec<(Days, f64)> = features
        .values()
        .map(|f| predictions::repeat_buying(f, today).unwrap())
        .collect();
    let days: Vec<Days> = summaries.iter().map(|(d, _)| *d).collect();
    let bg = bgnbd::fit(&days).unwrap();
    let repeat: Vec<(u32, f64)> = summaries.iter().map(|(d, m)| (d.frequency, *m)).collect();
    let gg = gamma_gamma::fit(&repeat).unwrap();
    let theirs = reference.models();

    // Both optimisers (Nelder–Mead here, BFGS in lifetimes) reach the same maximum: the log-likelihoods agree to
    // 1e-7, the parameters (on a flatter surface) within 1e-4 (on this data they differ by about 1e-6).
    let mean_ll = bg.log_likelihood / bg.customers as f64;
    assert!(
        close(mean_ll, reference.get("bgnbd", "mean_log_likelihood"), 1e-7),
        "BG/NBD mean log-likelihood {mean_ll}"
    );
    let gg_mean_ll = gg.log_likelihood / gg.customers as f64;
    assert!(
        close(
            gg_mean_ll,
            reference.get("gamma_gamma", "mean_log_likelihood"),
            1e-7
        ),
        "Gamma-Gamma mean log-likelihood {gg_mean_ll}"
    );
    assert_eq!(
        gg.customers as u64,
        reference.json["gamma_gamma"]["customers"].as_u64().unwrap()
    );
    let ours = (bg.params, gg.params);
    for (name, a, b) in [
        ("r", ours.0.r, theirs.bgnbd.r),
        ("alpha", ours.0.alpha, theirs.bgnbd.alpha),
        ("a", ours.0.a, theirs.bgnbd.a),
        ("b", ours.0.b, theirs.bgnbd.b),
        ("p", ours.1.p, theirs.gamma_gamma.unwrap().p),
        ("q", ours.1.q, theirs.gamma_gamma.unwrap().q),
        ("v", ours.1.v, theirs.gamma_gamma.unwrap().v),
    ] {
        assert!(close(a, b, 1e-4), "{name}: ours {a}, lifetimes {b}");
    }

    // And so do the predictions a user sees, from each side's own fit.
    let fitted = Models {
        bgnbd: bg.params,
        gamma_gamma: Some(gg.params),
    };
    for (row, (days, spend)) in reference.predictions().iter().zip(&summaries) {
        let p = predictions::predict_days(&fitted, *days, *spend, &HORIZON);
        let theirs = row["clv_12_months"].as_f64().unwrap();
        assert!(
            close(p.lifetime_value.unwrap(), theirs, 5e-3),
            "customer {}: lifetime value {:?} against {theirs}",
            row["customer_id"],
            p.lifetime_value
        );
    }
}
