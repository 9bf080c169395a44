//! RFM scores, exactly as docs/segmentation.md defines them.
//!
//! Each dimension's score is `1 + floor(5 × W / N)`, capped at 5, where N is the number of scored customers and W
//! the number of scored customers strictly worse on that dimension (more days since the last order; fewer orders;
//! less money). Ties share a score. The RFM code is `100·R + 10·F + M` (111–555).
//!
//! Scores depend only on how many customers are strictly worse, so each dimension reduces to four cut values (where
//! the score steps up to 2, 3, 4 and 5): [`Boundaries`]. A full recompute takes them from the population; between
//! recomputes a changed customer is scored against the current ones in constant time.

/// One customer's raw RFM values over its eligible orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RfmValues {
    /// Whole days from the last eligible order to the as-of date.
    pub recency_days: u32,
    /// Number of eligible orders.
    pub frequency: u32,
    /// Sum of their amounts, in minor units.
    pub monetary: i64,
}

/// Scores from 1 (worst) to 5 (best).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RfmScore {
    pub r: u8,
    pub f: u8,
    pub m: u8,
}

impl RfmScore {
    /// `100·R + 10·F + M`.
    pub fn code(self) -> u16 {
        100 * u16::from(self.r) + 10 * u16::from(self.f) + u16::from(self.m)
    }
}

/// Where each dimension's score steps up, taken from a population. `cuts[k]` is the cut for score `k + 2`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boundaries {
    /// Customers scored when the boundaries were taken.
    pub population: usize,
    /// Recency scores at least `k + 2` when the days are strictly fewer than `recency[k]`.
    pub recency: [u32; 4],
    /// Frequency scores at least `k + 2` when the orders are strictly more than `frequency[k]`.
    pub frequency: [u32; 4],
    /// Monetary scores at least `k + 2` when the amount is strictly more than `monetary[k]`.
    pub monetary: [i64; 4],
}

/// How many customers must be strictly worse for a score of at least `k` (2..=5): `ceil((k - 1) · N / 5)`.
fn worse_needed(k: usize, population: usize) -> usize {
    ((k - 1) * population).div_ceil(5)
}

impl Boundaries {
    /// The boundaries of a population; `None` when it is empty (nobody is scored).
    pub fn of(population: &[RfmValues]) -> Option<Self> {
        let n = population.len();
        if n == 0 {
            return None;
        }
        let mut recency: Vec<u32> = population.iter().map(|v| v.recency_days).collect();
        let mut frequency: Vec<u32> = population.iter().map(|v| v.frequency).collect();
        let mut monetary: Vec<i64> = population.iter().map(|v| v.monetary).collect();
        // Recency is better when lower: sort so that the worse values come first, as for the other two.
        recency.sort_unstable_by(|a, b| b.cmp(a));
        frequency.sort_unstable();
        monetary.sort_unstable();
        // A value has at least t strictly worse values exactly when it is strictly better than the t-th worst one.
        let cut = |k: usize| worse_needed(k, n) - 1;
        Some(Self {
            population: n,
            recency: [2, 3, 4, 5].map(|k| recency[cut(k)]),
            frequency: [2, 3, 4, 5].map(|k| frequency[cut(k)]),
            monetary: [2, 3, 4, 5].map(|k| monetary[cut(k)]),
        })
    }

    /// The score of one customer against these boundaries.
    pub fn score(&self, values: RfmValues) -> RfmScore {
        let steps = |passed: [bool; 4]| 1 + passed.iter().filter(|p| **p).count() as u8;
        RfmScore {
            r: steps(self.recency.map(|cut| values.recency_days < cut)),
            f: steps(self.frequency.map(|cut| values.frequency > cut)),
            m: steps(self.monetary.map(|cut| values.monetary > cut)),
        }
    }
}

/// Scores a whole population against its own boundaries (a full recompute).
pub fn score_all(population: &[RfmValues]) -> Vec<RfmScore> {
    match Boundaries::of(population) {
        Some(boundaries) => population.iter().map(|v| boundaries.score(*v)).collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, read literally: count the strictly worse customers, O(N²).
    fn by_definition(population: &[RfmValues]) -> Vec<RfmScore> {
        let n = population.len();
        let score = |worse: usize| (1 + 5 * worse / n).min(5) as u8;
        population
            .iter()
            .map(|v| RfmScore {
                r: score(
                    population
                        .iter()
                        .filter(|o| o.recency_days > v.recency_days)
                        .count(),
                ),
                f: score(
                    population
                        .iter()
                        .filter(|o| o.frequency < v.frequency)
                        .count(),
                ),
                m: score(
                    population
                        .iter()
                        .filter(|o| o.monetary < v.monetary)
                        .count(),
                ),
            })
            .collect()
    }

    fn values(recency_days: u32, frequency: u32, monetary: i64) -> RfmValues {
        RfmValues {
            recency_days,
            frequency,
            monetary,
        }
    }

    #[test]
    fn ten_distinct_customers_spread_over_the_five_scores() {
        let population: Vec<RfmValues> = (0..10)
            .map(|i| values(100 - i * 10, i + 1, i64::from(i) * 1000))
            .collect();
        let scores = score_all(&population);
        let r: Vec<u8> = scores.iter().map(|s| s.r).collect();
        assert_eq!(r, [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        assert_eq!(scores[9].code(), 555);
        assert_eq!(scores[0].code(), 111);
    }

    #[test]
    fn ties_share_a_score() {
        let population = vec![values(5, 1, 100); 7];
        assert!(
            score_all(&population).iter().all(|s| s.code() == 111),
            "nobody is strictly worse than anybody"
        );
        let mut mixed = vec![values(30, 2, 500); 4];
        mixed.push(values(1, 9, 9000));
        let scores = score_all(&mixed);
        assert!(scores[..4].iter().all(|s| *s == scores[0]));
        assert_eq!(scores[4].code(), 555);
    }

    #[test]
    fn new_values_are_scored_against_the_last_recompute() {
        let population: Vec<RfmValues> = (0..100)
            .map(|i| values(i, 100 - i, i64::from(100 - i)))
            .collect();
        let boundaries = Boundaries::of(&population).unwrap();
        assert_eq!(boundaries.score(values(0, 1000, 1_000_000)).code(), 555);
        assert_eq!(boundaries.score(values(10_000, 0, 0)).code(), 111);
        assert!(Boundaries::of(&[]).is_none());
    }

    proptest! {
        #[test]
        fn boundaries_score_exactly_as_the_definition(
            raw in proptest::collection::vec((0u32..400, 1u32..30, 0i64..50_000), 1..200)
        ) {
            let population: Vec<RfmValues> = raw.into_iter().map(|(r, f, m)| values(r, f, m)).collect();
            prop_assert_eq!(score_all(&population), by_definition(&population));
        }

        #[test]
        fn scores_are_monotone_in_each_dimension(
            raw in proptest::collection::vec((0u32..400, 1u32..30, 0i64..50_000), 1..100),
            probe in (0u32..400, 1u32..30, 0i64..50_000),
        ) {
            let population: Vec<RfmValues> = raw.into_iter().map(|(r, f, m)| values(r, f, m)).collect();
            let b = Boundaries::of(&population).unwrap();
            let base = b.score(values(probe.0, probe.1, probe.2));
            let better = b.score(values(probe.0.saturating_sub(7), probe.1 + 3, probe.2 + 999));
            prop_assert!(better.r >= base.r && better.f >= base.f && better.m >= base.m);
            prop_assert!((111..=555).contains(&base.code()));
        }
    }
}
