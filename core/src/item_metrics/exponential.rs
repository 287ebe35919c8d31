//! A base-2 exponential histogram (the OpenTelemetry data model's): bucket
//! `i` at scale `s` holds `(2^(i/2^s), 2^((i+1)/2^s)]`. It starts at the
//! finest scale and halves its resolution whenever the values recorded
//! would need more than `max_size` buckets on one side.

use opentelemetry_proto::tonic::metrics::v1::{ExponentialHistogramDataPoint, exponential_histogram_data_point};

/// The finest scale the data model allows.
const MAX_SCALE: i32 = 20;

/// The buckets of one sign.
#[derive(Debug, Default, Clone)]
struct Side {
    offset: i32,
    counts: Vec<u64>,
}

impl Side {
    fn range_with(&self, index: i32) -> (i32, i32) {
        if self.counts.is_empty() {
            (index, index)
        } else {
            (self.offset.min(index), (self.offset + self.counts.len() as i32 - 1).max(index))
        }
    }

    fn add(&mut self, index: i32, weight: u64) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(0);
        } else if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.offset = index;
        } else if index >= self.offset + self.counts.len() as i32 {
            self.counts.resize((index - self.offset + 1) as usize, 0);
        }
        self.counts[(index - self.offset) as usize] += weight;
    }

    fn downscale(&mut self, by: u32) {
        if by == 0 || self.counts.is_empty() {
            return;
        }
        let offset = self.offset >> by;
        let last = (self.offset + self.counts.len() as i32 - 1) >> by;
        let mut counts = vec![0; (last - offset + 1) as usize];
        for (j, count) in self.counts.iter().enumerate() {
            counts[(((self.offset + j as i32) >> by) - offset) as usize] += count;
        }
        self.offset = offset;
        self.counts = counts;
    }

    fn into_buckets(self) -> exponential_histogram_data_point::Buckets {
        exponential_histogram_data_point::Buckets { offset: self.offset, bucket_counts: self.counts }
    }
}

/// An exponential histogram being filled.
#[derive(Debug, Clone)]
pub struct ExponentialBuckets {
    max_size: usize,
    scale: i32,
    zero: u64,
    positive: Side,
    negative: Side,
}

impl ExponentialBuckets {
    /// An empty histogram of at most `max_size` buckets a side.
    pub fn new(max_size: usize) -> Self {
        ExponentialBuckets {
            max_size: max_size.max(2),
            scale: MAX_SCALE,
            zero: 0,
            positive: Side::default(),
            negative: Side::default(),
        }
    }

    fn index(value: f64, scale: i32) -> i32 {
        ((value.log2() * 2f64.powi(scale)).ceil() - 1.0) as i32
    }

    /// Records `value` `weight` times.
    pub fn record(&mut self, value: f64, weight: u64) {
        if value == 0.0 || !value.is_finite() {
            self.zero += weight;
            return;
        }
        let magnitude = value.abs();
        loop {
            let index = Self::index(magnitude, self.scale);
            let side = if value > 0.0 { &self.positive } else { &self.negative };
            let (low, high) = side.range_with(index);
            if ((high - low) as usize) < self.max_size {
                let side = if value > 0.0 { &mut self.positive } else { &mut self.negative };
                side.add(index, weight);
                return;
            }
            self.positive.downscale(1);
            self.negative.downscale(1);
            self.scale -= 1;
        }
    }

    /// The data point (count, scale and buckets; the caller adds the rest).
    pub fn into_point(self) -> ExponentialHistogramDataPoint {
        let count = self.zero + self.positive.counts.iter().sum::<u64>() + self.negative.counts.iter().sum::<u64>();
        ExponentialHistogramDataPoint {
            count,
            scale: self.scale,
            zero_count: self.zero,
            positive: Some(self.positive.into_buckets()),
            negative: Some(self.negative.into_buckets()),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::exponential_quantile;

    #[test]
    fn values_spanning_decades_fit_in_max_size_and_keep_their_median() {
        let mut histogram = ExponentialBuckets::new(20);
        for value in 1..=1000 {
            histogram.record(f64::from(value), 1);
        }
        histogram.record(0.0, 3);
        let point = histogram.into_point();
        assert_eq!(point.count, 1003);
        assert_eq!(point.zero_count, 3);
        let positive = point.positive.unwrap();
        assert!(positive.bucket_counts.len() <= 20, "{}", positive.bucket_counts.len());
        let median = exponential_quantile(point.scale, 3, positive.offset, &positive.bucket_counts, 0.5).unwrap();
        assert!((400.0..=620.0).contains(&median), "median {median} at scale {}", point.scale);
    }

    #[test]
    fn one_value_keeps_the_finest_scale() {
        let mut histogram = ExponentialBuckets::new(160);
        histogram.record(4.0, 2);
        let point = histogram.into_point();
        assert_eq!(point.scale, MAX_SCALE);
        assert_eq!(point.positive.unwrap().bucket_counts, vec![2]);
    }
}
