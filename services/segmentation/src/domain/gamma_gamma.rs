//! Gamma-Gamma spend model (Fader, Hardie & Lee, "RFM and CLV: Using Iso-Value Curves for Customer Base
//! Analysis", 2005; Fader & Hardie, "The Gamma-Gamma Model of Monetary Value", 2013): the expected value of a
//! customer's future purchases from the mean spend of its repeat purchases. Fitted on customers with at least one
//! repeat purchase day; the spend of a purchase day is the sum of its eligible orders, in minor units.

use super::fit::{FitError, Fitted, ln_gamma, minimize_positive};

/// Spend per purchase is Gamma(p, ν) with ν ~ Gamma(q, v) across customers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

/// Fewest repeat customers a fit accepts.
pub const MIN_CUSTOMERS: usize = 30;

impl GammaGamma {
    /// The population's mean spend per purchase, `p·v / (q − 1)`.
    pub fn population_mean(&self) -> f64 {
        self.p * self.v / (self.q - 1.0)
    }

    /// E[spend per purchase | x repeat purchase days with mean spend m]: the population mean and the customer's own
    /// mean, weighted by how much the customer's history says (`p·x / (p·x + q − 1)`). Without repeat purchases it
    /// is the population mean.
    pub fn expected_order_value(&self, frequency: u32, monetary: f64) -> f64 {
        let px = self.p * f64::from(frequency);
        let weight = px / (px + self.q - 1.0);
        (1.0 - weight) * self.population_mean() + weight * monetary
    }
}

/// Repeat customers grouped by frequency, so the Gamma-function terms are computed once per distinct frequency.
struct Groups {
    /// (frequency, Σ ln m, the customers' m).
    by_frequency: Vec<(f64, f64, Vec<f64>)>,
    customers: usize,
}

impl Groups {
    fn of(customers: &[(u32, f64)]) -> Self {
        let mut sorted = customers.to_vec();
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut by_frequency: Vec<(f64, f64, Vec<f64>)> = Vec::new();
        for (x, m) in sorted {
            let x = f64::from(x);
            match by_frequency.last_mut() {
                Some(group) if group.0 == x => {
                    group.1 += m.ln();
                    group.2.push(m);
                }
                _ => by_frequency.push((x, m.ln(), vec![m])),
            }
        }
        Self {
            by_frequency,
            customers: customers.len(),
        }
    }

    /// Σ over customers of `ln Γ(px+q) − ln Γ(px) − ln Γ(q) + q ln v + (px−1) ln m + px ln x − (px+q) ln(x·m + v)`.
    fn log_likelihood(&self, g: &GammaGamma) -> f64 {
        let shared = -ln_gamma(g.q) + g.q * g.v.ln();
        self.by_frequency
            .iter()
            .map(|(x, sum_ln_m, ms)| {
                let px = g.p * x;
                let n = ms.len() as f64;
                let per_customer = shared + ln_gamma(px + g.q) - ln_gamma(px) + px * x.ln();
                let spread: f64 = ms.iter().map(|m| (x * m + g.v).ln()).sum();
                n * per_customer + (px - 1.0) * sum_ln_m - (px + g.q) * spread
            })
            .sum()
    }
}

/// Fits the model to `(repeat purchase days, mean spend per repeat purchase day)` of customers with at least one
/// repeat purchase day and a positive mean spend.
pub fn fit(customers: &[(u32, f64)]) -> Result<Fitted<GammaGamma>, FitError> {
    let usable: Vec<(u32, f64)> = customers
        .iter()
        .copied()
        .filter(|(x, m)| *x > 0 && *m > 0.0)
        .collect();
    if usable.len() < MIN_CUSTOMERS {
        return Err(FitError::TooFewCustomers {
            found: usable.len(),
            needed: MIN_CUSTOMERS,
        });
    }
    let groups = Groups::of(&usable);
    let n = groups.customers as f64;
    let model = |p: &[f64]| GammaGamma {
        p: p[0],
        q: p[1],
        v: p[2],
    };
    // v is in the unit of spend: starting it at the mean spend keeps the first simplex in a sensible region.
    let mean = usable.iter().map(|(_, m)| m).sum::<f64>() / n;
    let optimum = minimize_positive(
        |p| -groups.log_likelihood(&model(p)) / n,
        &[1.0, 2.0, mean],
        1e-13,
    )?;
    let params = model(&optimum.params);
    if params.q <= 1.0 {
        return Err(FitError::Degenerate(format!(
            "q = {:.4} ≤ 1: spend has no finite population mean",
            params.q
        )));
    }
    Ok(Fitted {
        params,
        log_likelihood: groups.log_likelihood(&params),
        customers: groups.customers,
        iterations: optimum.iterations,
        at_bound: optimum.at_bound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expected_value_moves_from_the_population_mean_to_the_customers_own() {
        let g = GammaGamma {
            p: 6.25,
            q: 3.74,
            v: 15.44,
        };
        let population = g.population_mean();
        assert!((population - 6.25 * 15.44 / 2.74).abs() < 1e-9);
        assert!((g.expected_order_value(0, 0.0) - population).abs() < 1e-9);
        // A customer who spends more than the population: the more repeat days, the closer to its own mean.
        let one = g.expected_order_value(1, 100.0);
        let ten = g.expected_order_value(10, 100.0);
        assert!(population < one && one < ten && ten < 100.0);
    }

    #[test]
    fn a_fit_recovers_the_spend_that_generated_the_data() {
        // Every customer spends around 50 on each repeat day: the fitted population mean lands near 50.
        let customers: Vec<(u32, f64)> = (0..400)
            .map(|i| (1 + i % 7, 40.0 + f64::from(i % 21)))
            .collect();
        let fitted = fit(&customers).unwrap();
        let mean = fitted.params.population_mean();
        assert!((mean - 50.0).abs() < 2.0, "{fitted:?}");
        assert_eq!(fitted.customers, 400);
        assert!(fitted.log_likelihood.is_finite());
    }

    #[test]
    fn too_few_repeat_customers_is_an_error() {
        let customers = vec![(0, 10.0); 100];
        assert_eq!(
            fit(&customers),
            Err(FitError::TooFewCustomers {
                found: 0,
                needed: MIN_CUSTOMERS
            })
        );
    }
}
