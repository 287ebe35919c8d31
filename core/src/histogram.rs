//! Percentiles read from OTLP histograms, as a backend would estimate them:
//! find the bucket holding the rank, interpolate linearly inside it.

/// The percentiles flowtel prints for a distribution: p50, p90, p99, p99.9.
pub const REPORTED_QUANTILES: [(f64, &str); 4] = [(0.5, "p50"), (0.9, "p90"), (0.99, "p99"), (0.999, "p99.9")];

/// The `q` quantile (0 < q ≤ 1) of an explicit-bucket histogram: bucket `i`
/// holds values in `(bounds[i-1], bounds[i]]`, the first from `min` (or 0,
/// or the first bound when that is negative) and the last up to `max` (or
/// the last bound). `None` when it is empty or malformed.
pub fn explicit_quantile(bounds: &[f64], counts: &[u64], q: f64, min: Option<f64>, max: Option<f64>) -> Option<f64> {
    if counts.len() != bounds.len() + 1 || !(q > 0.0 && q <= 1.0) {
        return None;
    }
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (index, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (seen + count) as f64 >= rank {
            let first = bounds.first().copied().unwrap_or(0.0);
            let last = bounds.last().copied().unwrap_or(0.0);
            let lower = if index == 0 { min.unwrap_or(first.min(0.0)) } else { bounds[index - 1] };
            let upper = if index == bounds.len() { max.unwrap_or(last) } else { bounds[index] };
            let inside = (rank - seen as f64) / count as f64;
            let value = lower + (upper - lower) * inside.clamp(0.0, 1.0);
            return Some(value.clamp(min.unwrap_or(f64::MIN), max.unwrap_or(f64::MAX)));
        }
        seen += count;
    }
    None
}

/// The `q` quantile of an exponential histogram's positive range (with its
/// zero bucket): bucket `offset + i` holds `(base^(offset+i), base^(offset+i+1)]`
/// with `base = 2^(2^-scale)`; interpolation is geometric inside a bucket.
pub fn exponential_quantile(scale: i32, zero_count: u64, offset: i32, counts: &[u64], q: f64) -> Option<f64> {
    if !(q > 0.0 && q <= 1.0) {
        return None;
    }
    let total = zero_count + counts.iter().sum::<u64>();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    if zero_count as f64 >= rank {
        return Some(0.0);
    }
    let base = (2f64).powf((2f64).powi(-scale));
    let mut seen = zero_count;
    for (index, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        if (seen + count) as f64 >= rank {
            let lower = base.powi(offset + index as i32);
            let inside = (rank - seen as f64) / count as f64;
            return Some(lower * base.powf(inside.clamp(0.0, 1.0)));
        }
        seen += count;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_inside_the_bucket_holding_the_rank() {
        // 10 values in (0,1], 80 in (1,2], 10 in (2,4].
        let bounds = [1.0, 2.0, 4.0];
        let counts = [10, 80, 10, 0];
        assert_eq!(explicit_quantile(&bounds, &counts, 0.5, None, None), Some(1.5));
        assert_eq!(explicit_quantile(&bounds, &counts, 0.1, None, None), Some(1.0));
        assert_eq!(explicit_quantile(&bounds, &counts, 0.95, None, None), Some(3.0));
        assert_eq!(explicit_quantile(&bounds, &counts, 1.0, None, Some(3.5)), Some(3.5));
        assert_eq!(explicit_quantile(&bounds, &[0, 0, 0, 0], 0.5, None, None), None);
        assert_eq!(explicit_quantile(&bounds, &[1, 2], 0.5, None, None), None, "counts must be bounds + 1");
    }

    #[test]
    fn overflow_bucket_ends_at_max_or_last_bound() {
        let bounds = [1.0];
        assert_eq!(explicit_quantile(&bounds, &[0, 4], 0.5, None, None), Some(1.0));
        assert_eq!(explicit_quantile(&bounds, &[0, 4], 0.5, None, Some(3.0)), Some(2.0));
    }

    #[test]
    fn exponential_buckets_interpolate_geometrically() {
        // scale 0: base 2; bucket 1 = (2, 4].
        let p = exponential_quantile(0, 0, 1, &[4], 0.5).unwrap();
        assert!((p - 2.0 * 2f64.sqrt()).abs() < 1e-9, "{p}");
        assert_eq!(exponential_quantile(0, 5, 1, &[4], 0.5), Some(0.0));
        assert_eq!(exponential_quantile(0, 0, 0, &[], 0.5), None);
    }
}
