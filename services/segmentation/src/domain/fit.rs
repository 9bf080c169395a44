//! Maximum-likelihood fitting shared by the prediction models: Nelder–Mead (argmin) over the logarithms of the
//! parameters, so every parameter stays positive without constraints, as the `lifetimes` package does.

use argmin::core::{CostFunction, Executor, State, TerminationReason, TerminationStatus};
use argmin::solver::neldermead::NelderMead;

/// A model fitted to a tenant's customers.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted<P> {
    pub params: P,
    /// The log-likelihood at `params`, summed over the customers.
    pub log_likelihood: f64,
    pub customers: usize,
    pub iterations: u64,
    /// Indexes of the parameters that ended at their bound ([`BOUND`]).
    pub at_bound: Vec<usize>,
}

/// Where the optimiser stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimum {
    /// The parameters (not their logarithms).
    pub params: Vec<f64>,
    /// The objective at `params`.
    pub value: f64,
    pub iterations: u64,
    /// Indexes of the parameters that ended at their bound.
    pub at_bound: Vec<usize>,
}

/// Parameters stay within e^±25 (about 1.4e-11 to 7.2e10). Some data has its optimum at infinity (for BG/NBD:
/// buyers so regular that their purchase rates look identical, r and α growing together); the bound stops the
/// search where the predictions no longer change, and the fit reports which parameters reached it.
pub const BOUND: f64 = 25.0;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("too few customers to fit ({found}, at least {needed} needed)")]
    TooFewCustomers { found: usize, needed: usize },
    #[error("the fit did not converge after {0} iterations")]
    NotConverged(u64),
    #[error("the fitted parameters are unusable: {0}")]
    Degenerate(String),
    #[error("optimiser: {0}")]
    Optimiser(String),
}

/// Most Nelder–Mead iterations before giving up.
const MAX_ITERATIONS: u64 = 4_000;

struct LogSpace<F> {
    objective: F,
}

impl<F: Fn(&[f64]) -> f64> CostFunction for LogSpace<F> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, log_params: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let params: Vec<f64> = log_params
            .iter()
            .map(|p| p.clamp(-BOUND, BOUND).exp())
            .collect();
        let value = (self.objective)(&params);
        // The simplex treats a non-finite value as the worst point and moves away from it.
        Ok(if value.is_finite() { value } else { f64::MAX })
    }
}

/// Minimises `objective` over positive parameters, starting at `start`. The simplex spans a factor of e around the
/// start in each parameter; the search stops when the objective's spread over the simplex falls below `tolerance`.
pub fn minimize_positive(
    objective: impl Fn(&[f64]) -> f64,
    start: &[f64],
    tolerance: f64,
) -> Result<Optimum, FitError> {
    let origin: Vec<f64> = start.iter().map(|p| p.ln()).collect();
    let mut simplex = vec![origin.clone()];
    for i in 0..origin.len() {
        let mut vertex = origin.clone();
        vertex[i] += 1.0;
        simplex.push(vertex);
    }
    let solver = NelderMead::new(simplex)
        .with_sd_tolerance(tolerance)
        .map_err(|err| FitError::Optimiser(err.to_string()))?;
    let result = Executor::new(LogSpace { objective }, solver)
        .configure(|state| state.max_iters(MAX_ITERATIONS))
        .run()
        .map_err(|err| FitError::Optimiser(err.to_string()))?;
    let state = result.state();
    let iterations = state.get_iter();
    if matches!(
        state.get_termination_status(),
        TerminationStatus::Terminated(TerminationReason::MaxItersReached)
    ) {
        return Err(FitError::NotConverged(iterations));
    }
    let best = state
        .get_best_param()
        .ok_or_else(|| FitError::Optimiser("no parameters".into()))?;
    let clamped: Vec<f64> = best.iter().map(|p| p.clamp(-BOUND, BOUND)).collect();
    Ok(Optimum {
        params: clamped.iter().map(|p| p.exp()).collect(),
        value: state.get_best_cost(),
        iterations,
        at_bound: clamped
            .iter()
            .enumerate()
            .filter(|(_, p)| p.abs() >= BOUND - 1e-9)
            .map(|(i, _)| i)
            .collect(),
    })
}

/// `ln Γ(x)` for x > 0.
pub fn ln_gamma(x: f64) -> f64 {
    libm::lgamma(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_a_positive_bowl() {
        // Minimum at (2, 0.5): the optimiser works in logarithms and returns the parameters themselves.
        let bowl = |p: &[f64]| (p[0].ln() - 2f64.ln()).powi(2) + (p[1].ln() - 0.5f64.ln()).powi(2);
        let optimum = minimize_positive(bowl, &[1.0, 1.0], 1e-14).unwrap();
        assert!((optimum.params[0] - 2.0).abs() < 1e-5, "{optimum:?}");
        assert!((optimum.params[1] - 0.5).abs() < 1e-5, "{optimum:?}");
        assert!(optimum.value < 1e-10);
        assert!(optimum.at_bound.is_empty());
    }

    #[test]
    fn an_optimum_at_infinity_stops_at_the_bound_and_says_so() {
        // Decreasing forever in the first parameter: the search ends at e^25 and reports it.
        let slope = |p: &[f64]| -p[0].ln() + (p[1].ln() - 1.0).powi(2);
        let optimum = minimize_positive(slope, &[1.0, 1.0], 1e-14).unwrap();
        assert_eq!(optimum.at_bound, [0]);
        assert!((optimum.params[0] - BOUND.exp()).abs() < 1.0);
        assert!((optimum.params[1] - 1f64.exp()).abs() < 1e-4);
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        // Γ(n) = (n − 1)!
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
    }
}
