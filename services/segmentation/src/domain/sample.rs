//! Deterministic samples of customers: the same ids are chosen every time, whatever order they come in.

/// Whether `customer` is in the sample of `fraction` (0 to 1) of all customers drawn with `seed`: a SplitMix64 hash
/// of the id, compared with the fraction.
pub fn in_sample(customer: i64, seed: u64, fraction: f64) -> bool {
    let mut x = (customer as u64 ^ seed).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    (x as f64) < fraction * u64::MAX as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_holds_about_its_fraction_and_depends_on_the_seed() {
        let chosen = (0..100_000).filter(|id| in_sample(*id, 1, 0.25)).count();
        assert!((23_000..27_000).contains(&chosen), "{chosen}");
        let other: Vec<i64> = (0..1_000).filter(|id| in_sample(*id, 2, 0.25)).collect();
        let first: Vec<i64> = (0..1_000).filter(|id| in_sample(*id, 1, 0.25)).collect();
        assert_ne!(first, other);
        assert!((0..1_000).all(|id| in_sample(id, 1, 1.0)));
    }
}
