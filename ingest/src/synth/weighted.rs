//! Weighted choice over a fixed table of items.
//!
//! rand's own `WeightedIndex` sits behind its `alloc` feature, which the workspace leaves off; the
//! generator needs only this much of it: build once, then pick in `O(log n)` with one draw.

use rand::Rng;

/// Items with relative weights; every pick costs one `f64` draw and a binary search.
///
/// Invariant: never empty, and the total weight is positive (constructors are only called with
/// fixed, non-empty tables or with lists the caller has checked).
#[derive(Debug, Clone)]
pub(crate) struct Table<T> {
    items: Vec<T>,
    cumulative: Vec<f64>,
}

impl<T> Table<T> {
    /// A table from `(item, weight)` pairs; negative weights count as zero.
    pub(crate) fn new(pairs: impl IntoIterator<Item = (T, f64)>) -> Self {
        let mut items = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0.0;
        for (item, weight) in pairs {
            total += weight.max(0.0);
            items.push(item);
            cumulative.push(total);
        }
        debug_assert!(!items.is_empty() && total > 0.0, "a weighted table needs a positive total");
        Table { items, cumulative }
    }

    /// One item, chosen with probability proportional to its weight.
    pub(crate) fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> &T {
        &self.items[self.pick_index(rng)]
    }

    /// The index of one item, chosen with probability proportional to its weight.
    pub(crate) fn pick_index<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        // The first running total above x; zero-weight items share their predecessor's total and
        // so are never chosen.
        self.cumulative.partition_point(|&c| c <= x).min(self.items.len().saturating_sub(1))
    }

    /// The items in table order.
    #[cfg(test)]
    pub(crate) fn items(&self) -> &[T] {
        &self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn picks_follow_weights_and_skip_zero_weights() {
        let table = Table::new([("never", 0.0), ("rare", 1.0), ("common", 9.0)]);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            counts[table.pick_index(&mut rng)] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!((800..1200).contains(&counts[1]), "{counts:?}");
    }
}
