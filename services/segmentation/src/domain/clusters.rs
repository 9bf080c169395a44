//! Optional K-means grouping, the alternative to the six named RFM groups. Each scored customer is a point of
//! normalised features — ln(1 + x) of recency days, orders and spend (the three are heavy-tailed), then z-scores —
//! and the clusters are found by k-means++ seeding and Lloyd's iterations with a fixed seed, so the same population
//! always gives the same clusters. Clusters are numbered from the most valuable (recent, frequent, high spend) to the
//! least, and named after their centroids.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::rfm::RfmValues;
use super::sample::in_sample;

/// Most clusters a tenant may ask for.
pub const MAX_CLUSTERS: u32 = 12;
/// Customers the centroids are fitted on at most (chosen by a hash of the id); every customer is then assigned.
pub const SAMPLE: usize = 50_000;
/// Most of Lloyd's iterations.
const MAX_ITERATIONS: usize = 100;

type Point = [f64; 3];

/// A fitted clustering: how features are normalised, and the centroids in normalised space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clusters {
    pub mean: Point,
    pub sd: Point,
    /// Ordered from the most to the least valuable.
    pub centroids: Vec<Point>,
    /// One per centroid, for example "Recent, frequent, high spend".
    pub names: Vec<String>,
}

fn raw(v: &RfmValues) -> Point {
    [
        f64::from(v.recency_days).ln_1p(),
        f64::from(v.frequency).ln_1p(),
        (v.monetary.max(0) as f64).ln_1p(),
    ]
}

fn distance(a: &Point, b: &Point) -> f64 {
    (0..3).map(|i| (a[i] - b[i]).powi(2)).sum()
}

fn nearest(centroids: &[Point], p: &Point) -> usize {
    let mut best = (0, f64::INFINITY);
    for (i, c) in centroids.iter().enumerate() {
        let d = distance(c, p);
        if d < best.1 {
            best = (i, d);
        }
    }
    best.0
}

impl Clusters {
    fn normalise(&self, v: &RfmValues) -> Point {
        let r = raw(v);
        [0, 1, 2].map(|i| (r[i] - self.mean[i]) / self.sd[i])
    }

    /// The cluster (0-based) a customer belongs to.
    pub fn assign(&self, v: &RfmValues) -> usize {
        nearest(&self.centroids, &self.normalise(v))
    }

    /// A centroid in the features' own units: days, orders, minor units.
    pub fn centroid_values(&self, cluster: usize) -> [f64; 3] {
        let c = &self.centroids[cluster];
        [0, 1, 2].map(|i| (c[i] * self.sd[i] + self.mean[i]).exp_m1())
    }
}

/// Fits `k` clusters to the scored customers `(customer id, values)`; `None` with fewer customers than clusters.
pub fn fit(population: &[(i64, RfmValues)], k: usize, seed: u64) -> Option<Clusters> {
    if k == 0 || population.len() < k {
        return None;
    }
    // The sample: the ids whose hash falls in the first SAMPLE / n of the range, in id order, so the same
    // population gives the same sample whatever order it comes in. Normalisation is taken from the sample too.
    let keep = (SAMPLE as f64 / population.len() as f64).min(1.0);
    let mut sample: Vec<(i64, Point)> = population
        .iter()
        .filter(|(id, _)| in_sample(*id, seed, keep))
        .map(|(id, v)| (*id, raw(v)))
        .collect();
    if sample.len() < k {
        sample = population.iter().map(|(id, v)| (*id, raw(v))).collect();
    }
    sample.sort_unstable_by_key(|(id, _)| *id);
    let n = sample.len() as f64;
    let mut mean = [0.0; 3];
    for (_, p) in &sample {
        for i in 0..3 {
            mean[i] += p[i] / n;
        }
    }
    let mut sd = [0.0; 3];
    for (_, p) in &sample {
        for i in 0..3 {
            sd[i] += (p[i] - mean[i]).powi(2) / n;
        }
    }
    // A dimension where everyone is equal carries no information; a unit spread keeps it harmless.
    let sd = sd.map(|v| if v > 0.0 { v.sqrt() } else { 1.0 });
    let sample: Vec<Point> = sample
        .into_iter()
        .map(|(_, p)| [0, 1, 2].map(|i| (p[i] - mean[i]) / sd[i]))
        .collect();

    let mut rng = SmallRng::seed_from_u64(seed);
    let mut centroids = seed_centroids(&sample, k, &mut rng);
    let mut assignment = vec![usize::MAX; sample.len()];
    for _ in 0..MAX_ITERATIONS {
        let mut changed = false;
        for (a, p) in assignment.iter_mut().zip(&sample) {
            let c = nearest(&centroids, p);
            changed |= *a != c;
            *a = c;
        }
        if !changed {
            break;
        }
        let mut sums = vec![([0.0; 3], 0usize); k];
        for (a, p) in assignment.iter().zip(&sample) {
            for (sum, x) in sums[*a].0.iter_mut().zip(p) {
                *sum += x;
            }
            sums[*a].1 += 1;
        }
        for (c, (sum, count)) in centroids.iter_mut().zip(&sums) {
            if *count > 0 {
                *c = sum.map(|s| s / *count as f64);
            }
        }
    }
    // Most valuable first: recent (low recency), frequent, high spend.
    centroids.sort_by(|a, b| value(b).total_cmp(&value(a)));
    let names = name_all(&centroids);
    Some(Clusters {
        mean,
        sd,
        centroids,
        names,
    })
}

fn value(c: &Point) -> f64 {
    -c[0] + c[1] + c[2]
}

/// k-means++: the first centroid uniformly, each next one with probability proportional to its squared distance
/// from the nearest centroid so far.
fn seed_centroids(points: &[Point], k: usize, rng: &mut SmallRng) -> Vec<Point> {
    let mut centroids = vec![points[rng.random_range(0..points.len())]];
    let mut d2: Vec<f64> = points.iter().map(|p| distance(p, &centroids[0])).collect();
    while centroids.len() < k {
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut chosen = points.len() - 1;
            for (i, d) in d2.iter().enumerate() {
                if target < *d {
                    chosen = i;
                    break;
                }
                target -= d;
            }
            chosen
        } else {
            rng.random_range(0..points.len())
        };
        let c = points[next];
        for (d, p) in d2.iter_mut().zip(points) {
            *d = d.min(distance(p, &c));
        }
        centroids.push(c);
    }
    centroids
}

/// Names from where each centroid sits against the population (z-scores beyond ±0.5), made unique.
fn name_all(centroids: &[Point]) -> Vec<String> {
    let level = |z: f64, low: &'static str, mid: &'static str, high: &'static str| {
        if z < -0.5 {
            low
        } else if z > 0.5 {
            high
        } else {
            mid
        }
    };
    let mut names: Vec<String> = Vec::with_capacity(centroids.len());
    for c in centroids {
        let base = format!(
            "{}, {}, {}",
            level(c[0], "Recent", "Lapsing", "Lapsed"),
            level(c[1], "rare", "occasional", "frequent"),
            level(c[2], "low spend", "mid spend", "high spend")
        );
        let same = names.iter().filter(|n| n.starts_with(&base)).count();
        names.push(if same == 0 {
            base
        } else {
            format!("{base} ({})", same + 1)
        });
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(recency_days: u32, frequency: u32, monetary: i64) -> RfmValues {
        RfmValues {
            recency_days,
            frequency,
            monetary,
        }
    }

    /// Two clear groups: recent big spenders and lapsed one-off buyers.
    fn population() -> Vec<(i64, RfmValues)> {
        (0..400)
            .map(|i| {
                let id = i64::from(i) + 1;
                if i % 2 == 0 {
                    (id, v(5 + i % 7, 20 + i % 5, 500_000 + i64::from(i)))
                } else {
                    (id, v(600 + i % 30, 1, 2_000 + i64::from(i)))
                }
            })
            .collect()
    }

    #[test]
    fn finds_the_groups_orders_them_by_value_and_names_them() {
        let clusters = fit(&population(), 2, 42).unwrap();
        assert_eq!(
            clusters.names,
            ["Recent, frequent, high spend", "Lapsed, rare, low spend"]
        );
        assert_eq!(clusters.assign(&v(3, 25, 400_000)), 0);
        assert_eq!(clusters.assign(&v(700, 1, 1_000)), 1);
        let [days, orders, spend] = clusters.centroid_values(0);
        assert!(
            days < 15.0 && orders > 15.0 && spend > 400_000.0,
            "{days} {orders} {spend}"
        );
    }

    #[test]
    fn the_same_population_gives_the_same_clusters_whatever_its_order() {
        let mut shuffled = population();
        shuffled.reverse();
        assert_eq!(fit(&population(), 3, 7), fit(&shuffled, 3, 7));
        assert_eq!(fit(&population()[..2], 3, 7), None);
    }
}
