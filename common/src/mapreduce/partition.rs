//! The partitioner: which reducer a key goes to.
//!
//! **Wire contract.** Every map task on every machine (any arch, any
//! version) must send a key to the same reducer, so the hash is written
//! here by hand and must never change:
//!
//! 1. `h` = FNV-1a 64 over the key datum bytes, tag byte included
//!    (offset basis `0xcbf29ce484222325`, prime `0x100000001b3`);
//! 2. `h` = MurmurHash3's `fmix64` finalizer of `h` (FNV-1a alone mixes its
//!    last bytes poorly into the high bits used next);
//! 3. partition = `(h * reducers) >> 64` (multiply-shift, computed in 128
//!    bits), which is in `[0, reducers)` with negligible bias.

/// The reducer (in `[0, reducers)`) that receives `key`, a key datum with
/// its tag byte. `reducers == 0` is treated as 1.
pub fn partition_of(key: &[u8], reducers: u32) -> u32 {
    let h = key_hash(key);
    ((h as u128 * reducers.max(1) as u128) >> 64) as u32
}

/// The 64-bit hash of a key datum (steps 1 and 2 of the module docs).
pub fn key_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fmix64(h)
}

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{int_datum, str_datum};

    #[test]
    fn known_outputs_never_change() {
        // If any of these fail, the partitioner changed: that breaks the
        // wire contract between agents of different versions.
        let got: Vec<(u64, u32, u32)> = [&b""[..], b"s", b"shello", b"sthe", b"j42", b"s\xff\xfe"]
            .iter()
            .map(|k| (key_hash(k), partition_of(k, 7), partition_of(k, 1000)))
            .collect();
        assert_eq!(got, KNOWN);
    }

    /// (key_hash, partition of 7, partition of 1000), cross-checked against an
    /// independent implementation of the documented algorithm.
    const KNOWN: [(u64, u32, u32); 6] = [
        (17280346270528514342, 6, 936),
        (14715570115600788714, 5, 797),
        (18098027451005669748, 6, 981),
        (4076371379259752148, 1, 220),
        (1823951737884650645, 0, 98),
        (13824372778147168139, 5, 749),
    ];

    #[test]
    fn one_reducer_is_always_zero() {
        for k in [&b""[..], b"sa", b"j1", b"s\xff"] {
            assert_eq!(partition_of(k, 1), 0);
            assert_eq!(partition_of(k, 0), 0);
        }
    }

    #[test]
    fn spread_is_roughly_even() {
        for r in [2u32, 3, 8, 13, 64] {
            let mut counts = vec![0u32; r as usize];
            let n = 100_000u32;
            for i in 0..n {
                // Word-like keys: short, sharing prefixes, differing at the end.
                let k = str_datum(format!("w{i}").as_bytes());
                counts[partition_of(&k, r) as usize] += 1;
            }
            let mean = n as f64 / r as f64;
            for (p, &c) in counts.iter().enumerate() {
                // Within 5 standard deviations of a uniform spread.
                let dev = (c as f64 - mean).abs();
                assert!(dev < 5.0 * mean.sqrt(), "R={r} partition {p}: {c} vs mean {mean}");
            }
        }
        // Integer keys too.
        let mut counts = [0u32; 4];
        for i in 0..100_000i64 {
            counts[partition_of(&int_datum(i), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (c as i64 - 25_000).abs() < 1_250), "{counts:?}");
    }
}
