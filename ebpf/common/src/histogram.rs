//! The latency histograms the kernel fills: four buckets per power of two
//! of microseconds, so a bucket is at most 19% wide.
//!
//! The bucket bounds are `2^(j/4)` µs for `j` in `0..BOUNDS`; bucket 0 holds
//! values up to 1 µs, bucket `j` (for `1 <= j < BOUNDS`) holds values in
//! `(2^((j-1)/4), 2^(j/4)]` µs, and bucket `BOUNDS` everything above the
//! last bound. Those are exactly the buckets of an OTLP explicit-bucket
//! histogram whose `explicit_bounds` are the bounds, so userspace sends the
//! kernel's counts as they are.

/// Number of bounds: `2^0` µs up to `2^(107/4)` µs (about 113 s).
pub const BOUNDS: u32 = 108;
/// Number of buckets (one more than the bounds).
pub const BUCKETS: u32 = BOUNDS + 1;
/// Map slots per histogram: the buckets, then the sum of the values in µs.
pub const SLOTS: u32 = BUCKETS + 1;
/// Slot holding the sum of the values (µs).
pub const SUM_SLOT: u32 = BUCKETS;

/// A value's 16-bit mantissa (top bit set) is at least `THRESHOLDS[k]`
/// exactly when the value is at least `2^((k+1)/4)` times its power of two:
/// `ceil(2^(1/4) * 2^15)`, `ceil(2^(1/2) * 2^15)`, `ceil(2^(3/4) * 2^15)`.
const THRESHOLDS: [u64; 3] = [38_968, 46_341, 55_109];

/// The bucket of a value in microseconds.
#[inline(always)]
pub fn bucket(value_us: u64) -> u32 {
    if value_us <= 1 {
        return 0;
    }
    let msb = 63 - value_us.leading_zeros() as u64;
    let mantissa = if msb >= 15 { value_us >> (msb - 15) } else { value_us << (15 - msb) };
    // floor(4 * log2(value)), from the power of two and the quarter-octave step.
    let mut quarter = msb * 4;
    if mantissa >= THRESHOLDS[0] {
        quarter += 1;
    }
    if mantissa >= THRESHOLDS[1] {
        quarter += 1;
    }
    if mantissa >= THRESHOLDS[2] {
        quarter += 1;
    }
    // A power of two sits exactly on a bound, which belongs to the bucket
    // below it; any other value lies strictly above bound `quarter`.
    let slot = if value_us & (value_us - 1) == 0 { quarter } else { quarter + 1 };
    if slot > BOUNDS as u64 { BOUNDS } else { slot as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    extern crate std;

    /// Upper bound of bucket `j` in µs.
    fn bound(j: u32) -> f64 {
        (f64::from(j) / 4.0).exp2()
    }

    #[test]
    fn every_value_lands_between_its_bucket_bounds() {
        let mut values: std::vec::Vec<u64> = (0..200_000).collect();
        values.extend((0..60).map(|shift| 1u64 << shift));
        values.extend((1..60).map(|shift| (1u64 << shift) + 1));
        values.extend((1..60).map(|shift| (1u64 << shift) - 1));
        values.extend([u64::MAX, 113_000_000, 200_000_000]);
        for value in values {
            let slot = bucket(value);
            let v = value as f64;
            if slot < BOUNDS {
                assert!(v <= bound(slot) * (1.0 + 1e-9), "{value} above bucket {slot}");
            }
            if slot > 0 {
                // Allow the 2^-15 rounding of the mantissa at irrational bounds.
                assert!(v > bound(slot - 1) * (1.0 - 1.0 / 32_768.0), "{value} below bucket {slot}");
            }
        }
    }

    #[test]
    fn powers_of_two_sit_on_their_bound() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 4);
        assert_eq!(bucket(3), 7);
        assert_eq!(bucket(1024), 40);
        assert_eq!(bucket(1025), 41);
        assert_eq!(bucket(u64::MAX), BOUNDS);
    }
}
