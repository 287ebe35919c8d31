//! Consistent hashing: each backend owns many points on a 64-bit ring, and
//! a key belongs to the backend of the first point at or after its hash.
//! Adding or removing a backend moves only the keys of its points, about
//! one backend's share.

use xxhash_rust::xxh3::xxh3_64;

/// Points per backend: enough for shares within a few percent of even.
const POINTS_PER_BACKEND: u32 = 160;

/// The ring over a set of backends.
#[derive(Clone, Debug, Default)]
pub(super) struct Ring {
    /// `(point, backend index)`, sorted by point.
    points: Vec<(u64, usize)>,
    backends: Vec<String>,
}

/// The ring position of a routing key.
pub(super) fn hash_key(key: &[u8]) -> u64 {
    xxh3_64(key)
}

impl Ring {
    /// The ring of `backends` (duplicates removed; order does not matter,
    /// so every agent given the same set routes alike).
    pub(super) fn new(backends: &[String]) -> Ring {
        let mut backends = backends.to_vec();
        backends.sort();
        backends.dedup();
        let mut points = Vec::with_capacity(backends.len() * POINTS_PER_BACKEND as usize);
        for (index, backend) in backends.iter().enumerate() {
            for point in 0..POINTS_PER_BACKEND {
                points.push((xxh3_64(format!("{backend}#{point}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Ring { points, backends }
    }

    /// The backends, in the order [`Ring::owner`] indexes them.
    pub(super) fn backends(&self) -> &[String] {
        &self.backends
    }

    /// The index of the backend owning `hash`; `None` for an empty ring.
    pub(super) fn owner(&self, hash: u64) -> Option<usize> {
        let at = self.points.partition_point(|(point, _)| *point < hash);
        self.points.get(at).or_else(|| self.points.first()).map(|(_, backend)| *backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners(ring: &Ring, keys: u64) -> Vec<String> {
        (0..keys).map(|k| ring.backends()[ring.owner(hash_key(&k.to_le_bytes())).unwrap()].clone()).collect()
    }

    #[test]
    fn a_change_of_backends_moves_only_its_share() {
        let three: Vec<String> = ["a:4317", "b:4317", "c:4317"].map(String::from).to_vec();
        let ring = Ring::new(&three);
        let before = owners(&ring, 30_000);
        for backend in &three {
            let share = before.iter().filter(|b| *b == backend).count();
            assert!((8_000..12_000).contains(&share), "{backend}: {share} of 30000");
        }
        let mut four = three.clone();
        four.push("d:4317".into());
        let after = owners(&Ring::new(&four), 30_000);
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        assert!(after.iter().zip(&before).all(|(a, b)| a == b || a == "d:4317"), "keys only move to the new backend");
        assert!((5_500..9_500).contains(&moved), "about a quarter moves: {moved}");

        let two: Vec<String> = ["a:4317", "c:4317"].map(String::from).to_vec();
        let after = owners(&Ring::new(&two), 30_000);
        assert!(before.iter().zip(&after).all(|(b, a)| b == a || b == "b:4317"), "only b's keys move");
        assert_eq!(Ring::new(&three.iter().rev().cloned().collect::<Vec<_>>()).owner(42), ring.owner(42));
        assert_eq!(Ring::new(&[]).owner(42), None);
    }
}
