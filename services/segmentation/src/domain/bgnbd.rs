//! BG/NBD predictions (Fader, Hardie & Lee, "Counting Your Customers the Easy Way", 2005): how likely a customer is
//! still buying ("alive"), and how many purchases to expect from it over a horizon. The model is unit-free; Boomerang
//! uses days throughout. Fitting the four parameters per tenant (maximum likelihood) comes with the service.

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
        let log_odds = (self.a / (self.b + x - 1.0)).ln()
            + (self.r + x) * ((self.alpha + s.age) / (self.alpha + s.recency)).ln();
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
        let decay = ((alpha + s.age) / (alpha + s.age + horizon)).powf(r + x);
        let hyper = hyp2f1(r + x, b + x, a + b + x - 1.0, z);
        ((a + b + x - 1.0) / (a - 1.0)) * (1.0 - decay * hyper) / (1.0 + self.dropout_odds(s))
    }
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
