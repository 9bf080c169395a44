//! BG/NBD predictions (Fader, Hardie & Lee, "Counting Your Customers the Easy Way", 2005): how likely a customer is
//! still buying ("alive"), and how many purchases to expect from it over a horizon. The model is unit-free; Boomerang
//! uses days throughout. The four parameters are fitted per tenant by maximum likelihood ([`fit`]).

use super::fit::{FitError, Fitted, minimize_positive};

/// The model's parameters: purchase rates are Gamma(r, α); drop-out probabilities are Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// One customer in the model's terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Repeat purchases: distinct purchase days minus one.
    pub frequency: f64,
    /// Time from the first to the last purchase day.
    pub recency: f64,
    /// Time from the first purchase day to the as-of date (T).
    pub age: f64,
}

impl BgNbd {
    /// `a / (b + x − 1) · ((α + T) / (α + tₓ))^(r + x)` for customers with repeat purchases, else 0: the odds of
    /// having dropped out that both predictions share.
    fn dropout_odds(&self, s: &Summary) -> f64 {
        if s.frequency <= 0.0 {
            return 0.0;
        }
        let x = s.frequency;
        // ln((α + T) / (α + tₓ)) through ln_1p: exact even when α is huge (purchase rates nearly alike).
        let log_odds = (self.a / (self.b + x - 1.0)).ln()
            + (self.r + x) * ((s.age - s.recency) / (self.alpha + s.recency)).ln_1p();
        log_odds.exp()
    }

    /// P(alive | x, tₓ, T). Customers without repeat purchases are alive by the model's assumptions (they can only
    /// drop out right after a purchase).
    pub fn p_alive(&self, s: &Summary) -> f64 {
        1.0 / (1.0 + self.dropout_odds(s))
    }

    /// E[Y(t) | x, tₓ, T]: purchases expected over the next `horizon`.
    pub fn expected_purchases(&self, s: &Summary, horizon: f64) -> f64 {
        let (r, alpha, a, b, x) = (self.r, self.alpha, self.a, self.b, s.frequency);
        let z = horizon / (alpha + s.age + horizon);
        let decay = (-(r + x) * (horizon / (alpha + s.age)).ln_1p()).exp();
        let hyper = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        ((a + b + x - 1.0) / (a - 1.0)) * (1.0 - decay * hyper) / (1.0 + self.dropout_odds(s))
    }
}

/// One customer's repeat buying in whole days, the fit's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Days {
    /// Distinct purchase days minus one.
    pub frequency: u32,
    /// Days from the first to the last purchase day.
    pub recency: u32,
    /// Days from the first purchase day to the as-of date.
    pub age: u32,
}

impl Days {
    pub fn summary(self) -> Summary {
        Summary {
            frequency: f64::from(self.frequency),
            recency: f64::from(self.recency),
            age: f64::from(self.age),
        }
    }
}

/// Fewest customers a fit accepts: below this the likelihood surface is too flat to mean anything.
pub const MIN_CUSTOMERS: usize = 30;

/// Customers grouped by identical (frequency, recency, age): a tenant with a million customers has far fewer
/// distinct triples, and the terms that depend only on the frequency or only on a day count are computed once per
/// distinct value at each step of the optimiser.
struct Groups {
    /// Distinct frequencies.
    frequencies: Vec<u32>,
    /// (index into `frequencies`, recency, age, customers).
    rows: Vec<(usize, u32, u32, f64)>,
    max_day: u32,
}

impl Groups {
    fn of(customers: &[Days]) -> Self {
        let mut sorted = customers.to_vec();
        sorted.sort_unstable();
        let mut frequencies: Vec<u32> = Vec::new();
        let mut rows: Vec<(usize, u32, u32, f64)> = Vec::new();
        for day in sorted {
            if frequencies.last() != Some(&day.frequency) {
                frequencies.push(day.frequency);
            }
            let index = frequencies.len() - 1;
            match rows.last_mut() {
                Some(row) if (row.0, row.1, row.2) == (index, day.recency, day.age) => row.3 += 1.0,
                _ => rows.push((index, day.recency, day.age, 1.0)),
            }
        }
        let max_day = rows.iter().map(|r| r.2.max(r.1)).max().unwrap_or(0);
        Self {
            frequencies,
            rows,
            max_day,
        }
    }

    /// The log-likelihood of every customer under `m`, summed (Fader, Hardie & Lee 2005, equation 6):
    /// `ln Γ(r+x) − ln Γ(r) + r ln α + ln B(a, b+x) − ln B(a, b)
    ///  + ln[(α+T)^−(r+x) + [x>0] · a/(b+x−1) · (α+tₓ)^−(r+x)]`.
    ///
    /// Written so that it stays exact when r and α grow together (the optimum of very regular buyers lies far
    /// out along that ridge): the Gamma-function ratios become sums `Σₖ<ₓ ln(r+k) + ln(b+k) − ln(a+b+k)`, and
    /// `r ln α − (r+x) ln(α+T)` becomes `−x ln(α+T) − r ln(1 + T/α)`.
    fn log_likelihood(&self, m: &BgNbd) -> f64 {
        let days = 0..=self.max_day;
        let ln_alpha_plus: Vec<f64> = days
            .clone()
            .map(|d| (m.alpha + f64::from(d)).ln())
            .collect();
        let ln_1p_over_alpha: Vec<f64> = days.map(|d| (f64::from(d) / m.alpha).ln_1p()).collect();
        let mut per_frequency: Vec<(f64, f64, f64)> = Vec::with_capacity(self.frequencies.len());
        let (mut k, mut sum) = (0u32, 0.0);
        for &x in &self.frequencies {
            while k < x {
                let kf = f64::from(k);
                sum += (m.r + kf).ln() + (m.b + kf).ln() - (m.a + m.b + kf).ln();
                k += 1;
            }
            let x = f64::from(x);
            let dropout = if x > 0.0 {
                m.a.ln() - (m.b + x - 1.0).ln()
            } else {
                f64::NEG_INFINITY
            };
            per_frequency.push((sum, x, dropout));
        }
        self.rows
            .iter()
            .map(|&(i, recency, age, customers)| {
                let (sum, x, dropout) = per_frequency[i];
                let (age, recency) = (age as usize, recency as usize);
                let alive = -x * ln_alpha_plus[age] - m.r * ln_1p_over_alpha[age];
                let dropped =
                    dropout - x * ln_alpha_plus[recency] - m.r * ln_1p_over_alpha[recency];
                customers * (sum + log_add_exp(alive, dropped))
            })
            .sum()
    }
}

/// `ln(eᵃ + eᵇ)` without overflow; `b` may be −∞.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let (high, low) = if a >= b { (a, b) } else { (b, a) };
    high + (low - high).exp().ln_1p()
}

/// Fits the model to a tenant's customers by maximum likelihood.
pub fn fit(customers: &[Days]) -> Result<Fitted<BgNbd>, FitError> {
    if customers.len() < MIN_CUSTOMERS {
        return Err(FitError::TooFewCustomers {
            found: customers.len(),
            needed: MIN_CUSTOMERS,
        });
    }
    let groups = Groups::of(customers);
    let n = customers.len() as f64;
    let model = |p: &[f64]| BgNbd {
        r: p[0],
        alpha: p[1],
        a: p[2],
        b: p[3],
    };
    // α is a time scale: starting it at the mean age keeps the first simplex in a sensible region.
    let mean_age = customers.iter().map(|c| f64::from(c.age)).sum::<f64>() / n;
    let optimum = minimize_positive(
        |p| -groups.log_likelihood(&model(p)) / n,
        &[1.0, mean_age.max(1.0), 1.0, 1.0],
        1e-13,
    )?;
    let params = model(&optimum.params);
    Ok(Fitted {
        params,
        log_likelihood: groups.log_likelihood(&params),
        customers: customers.len(),
        iterations: optimum.iterations,
        at_bound: optimum.at_bound,
    })
}

/// The Gauss hypergeometric function ₂F₁(a, b; c; z) for 0 ≤ z < 1, summed as its power series until the terms no
/// longer change the sum.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let mut term = 1.0;
    let mut sum = 1.0;
    for n in 0..100_000 {
        let n = f64::from(n);
        term *= (a + n) * (b + n) / ((c + n) * (n + 1.0)) * z;
        sum += term;
        if term.abs() < 1e-15 * sum.abs() {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CDNOW parameters published with the model (in weeks).
    const CDNOW: BgNbd = BgNbd {
        r: 0.243,
        alpha: 4.414,
        a: 0.793,
        b: 2.426,
    };

    #[test]
    fn reproduces_the_papers_worked_example() {
        // Two repeat purchases, the last in week 30.43, observed for 38.86 weeks: the paper expects 1.226 purchases
        // over the next 39 weeks.
        let customer = Summary {
            frequency: 2.0,
            recency: 30.43,
            age: 38.86,
        };
        let expected = CDNOW.expected_purchases(&customer, 39.0);
        assert!((expected - 1.226).abs() < 0.0005, "{expected}");
        let p = CDNOW.p_alive(&customer);
        assert!((p - 0.7265).abs() < 0.0005, "{p}");
    }

    #[test]
    fn the_longer_the_silence_the_less_alive_and_the_fewer_purchases() {
        let active = Summary {
            frequency: 5.0,
            recency: 50.0,
            age: 52.0,
        };
        let silent = Summary {
            frequency: 5.0,
            recency: 10.0,
            age: 52.0,
        };
        assert!(CDNOW.p_alive(&silent) < CDNOW.p_alive(&active));
        assert!(CDNOW.expected_purchases(&silent, 26.0) < CDNOW.expected_purchases(&active, 26.0));
        let one_timer = Summary {
            frequency: 0.0,
            recency: 0.0,
            age: 30.0,
        };
        assert_eq!(CDNOW.p_alive(&one_timer), 1.0);
        let near = CDNOW.expected_purchases(&active, 4.0);
        let far = CDNOW.expected_purchases(&active, 52.0);
        assert!(0.0 < near && near < far);
    }

    #[test]
    fn the_series_matches_closed_forms() {
        // ₂F₁(1, 1; 2; z) = −ln(1 − z) / z, and ₂F₁(a, b; b; z) = (1 − z)^(−a).
        for z in [0.1, 0.5, 0.9] {
            assert!((hyp2f1(1.0, 1.0, 2.0, z) - (-(1.0 - z).ln() / z)).abs() < 1e-9);
            assert!((hyp2f1(2.5, 1.5, 1.5, z) - (1.0 - z).powf(-2.5)).abs() < 1e-9);
        }
    }
}
