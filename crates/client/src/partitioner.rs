//! Partitioning as Kafka's Java producer does it: murmur2 of the key for
//! keyed records, a sticky partition for records without a key.

/// Kafka's `Utils.murmur2`: MurmurHash2, 32 bits, seed 0x9747b28c, as Java
/// computes it (wrapping `int` arithmetic, logical shifts).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`.
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition of a keyed record: `toPositive(murmur2(key)) % partitions`,
/// as Kafka's `BuiltInPartitioner.partitionForKey`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    to_positive(murmur2(key)) % partitions
}

/// The partition for records without a key: Kafka's sticky partitioner
/// (KIP-480/KIP-794). One partition takes records until `batch_size` bytes
/// were produced to it, then another one is picked at random among those
/// with a leader.
#[derive(Debug)]
pub struct StickyPartitioner {
    current: Option<i32>,
    produced: usize,
    batch_size: usize,
    rng: u64,
}

impl StickyPartitioner {
    pub fn new(batch_size: usize) -> StickyPartitioner {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x2545_f491_4f6c_dd1d)
            ^ u64::from(std::process::id()).rotate_left(32);
        StickyPartitioner {
            current: None,
            produced: 0,
            batch_size: batch_size.max(1),
            rng: seed | 1,
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// The partition for the next record of `size` bytes; `available` lists
    /// the partitions with a leader (all partitions when empty).
    pub fn partition(&mut self, partitions: i32, available: &[i32], size: usize) -> i32 {
        let need_new = match self.current {
            None => true,
            Some(p) => {
                p >= partitions
                    || self.produced >= self.batch_size
                    || (!available.is_empty() && !available.contains(&p))
            }
        };
        if need_new {
            let previous = self.current;
            let pick = |r: u64, n: usize| (r % n as u64) as usize;
            let mut chosen = if available.is_empty() {
                let r = self.next_random();
                pick(r, partitions.max(1) as usize) as i32
            } else {
                let r = self.next_random();
                available[pick(r, available.len())]
            };
            // Move on from the previous partition when there is a choice.
            let choices = if available.is_empty() {
                partitions as usize
            } else {
                available.len()
            };
            if Some(chosen) == previous && choices > 1 {
                chosen = if available.is_empty() {
                    (chosen + 1) % partitions
                } else {
                    let i = available.iter().position(|p| *p == chosen).unwrap_or(0);
                    available[(i + 1) % available.len()]
                };
            }
            self.current = Some(chosen);
            self.produced = 0;
        }
        self.produced += size;
        self.current.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's own `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: &[(&str, i32)] = &[
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input.as_bytes()), *expected, "murmur2({input:?})");
        }
    }

    #[test]
    fn keyed_partitions_are_positive_and_stable() {
        // toPositive(-973932308) = 1173551340; % 3 = 0, % 10 = 0, % 7 = 2
        assert_eq!(partition_for_key(b"21", 3), 1_173_551_340 % 3);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        for n in 1..20 {
            let p = partition_for_key(b"foobar", n);
            assert!((0..n).contains(&p));
            assert_eq!(p, partition_for_key(b"foobar", n));
        }
        assert_eq!(partition_for_key(b"", 1), 0);
    }

    #[test]
    fn sticky_partition_switches_after_a_batch() {
        let mut s = StickyPartitioner::new(100);
        let first = s.partition(4, &[], 10);
        for _ in 0..9 {
            assert_eq!(s.partition(4, &[], 10), first);
        }
        let next = s.partition(4, &[], 10);
        assert_ne!(next, first);
        // Only available partitions are chosen.
        let mut s = StickyPartitioner::new(1);
        for _ in 0..50 {
            let p = s.partition(4, &[1, 3], 10);
            assert!(p == 1 || p == 3);
        }
        // A single partition is always chosen.
        let mut s = StickyPartitioner::new(1);
        for _ in 0..10 {
            assert_eq!(s.partition(1, &[], 10), 0);
        }
    }
}
