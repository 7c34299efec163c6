//! Latency samples and their percentiles (exact: every sample is kept; runs are bounded).

/// Latency samples in microseconds.
#[derive(Default)]
pub struct Samples(Vec<u64>);

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, micros: u64) {
        self.0.push(micros);
    }

    /// The `p`-th percentile (0–100) in microseconds, nearest-rank.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        Some(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    /// "p50 … p99 … p99.9 … max …" in milliseconds.
    pub fn summary(&self) -> String {
        let ms = |p: f64| {
            self.percentile(p).map_or("n/a".to_owned(), |us| {
                format!("{:.2} ms", us as f64 / 1000.0)
            })
        };
        format!(
            "p50 {} | p99 {} | p99.9 {} | max {} ({} samples)",
            ms(50.0),
            ms(99.0),
            ms(99.9),
            ms(100.0),
            self.0.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Samples;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for v in 1..=100 {
            s.push(v);
        }
        assert_eq!(s.percentile(50.0), Some(50));
        assert_eq!(s.percentile(99.0), Some(99));
        assert_eq!(s.percentile(100.0), Some(100));
        assert_eq!(Samples::default().percentile(50.0), None);
    }
}
