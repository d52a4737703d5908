//! Percentiles of samples and of Prometheus histograms.

/// The `q` quantile (0..=1) of `samples` by the nearest-rank method; None when empty.
pub fn percentile(samples: &[f64], q: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

/// A cumulative histogram: (upper bound, count of observations at or below it), sorted
/// by bound, the last bound being +Inf.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram(pub Vec<(f64, f64)>);

impl Histogram {
    /// What was observed between `earlier` and `self` (both from one counter's life).
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        Histogram(
            self.0
                .iter()
                .map(|&(le, count)| {
                    let before = earlier.0.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, c)| *c);
                    (le, count - before)
                })
                .collect(),
        )
    }

    pub fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, c)| *c)
    }

    /// The `q` quantile, interpolated linearly inside its bucket as Prometheus'
    /// histogram_quantile does; None without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.0 {
            if count >= rank {
                if le.is_infinite() {
                    // Above the highest finite bound: that bound is all that is known.
                    return Some(lower.0);
                }
                let in_bucket = count - lower.1;
                let share = if in_bucket > 0.0 { (rank - lower.1) / in_bucket } else { 1.0 };
                return Some(lower.0 + (le - lower.0) * share);
            }
            lower = (le, count);
        }
        Some(lower.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 0.5), Some(50.0));
        assert_eq!(percentile(&samples, 0.99), Some(99.0));
        assert_eq!(percentile(&[3.0], 0.99), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn histogram_quantile_interpolates_inside_the_bucket() {
        let h = Histogram(vec![(0.1, 50.0), (0.2, 90.0), (0.4, 100.0), (f64::INFINITY, 100.0)]);
        assert!((h.quantile(0.5).unwrap() - 0.1).abs() < 1e-9);
        assert!((h.quantile(0.99).unwrap() - 0.38).abs() < 1e-9);
    }

    #[test]
    fn histogram_since_subtracts_the_earlier_counts() {
        let before = Histogram(vec![(0.1, 10.0), (f64::INFINITY, 12.0)]);
        let after = Histogram(vec![(0.1, 15.0), (f64::INFINITY, 20.0)]);
        assert_eq!(after.since(&before), Histogram(vec![(0.1, 5.0), (f64::INFINITY, 8.0)]));
        assert_eq!(Histogram::default().quantile(0.99), None);
    }
}
