//! Test helpers: deterministic data and small chunk bounds, for this crate's unit tests and
//! (behind the `test-util` feature) those of the crates built on it.

use crate::chunk::ChunkParams;

/// Small FastCDC bounds (2 KiB / 8 KiB / 32 KiB), so tests cut many chunks from little data.
pub const SMALL: ChunkParams = ChunkParams {
    min: 2048,
    avg: 8192,
    max: 32768,
};

/// Deterministic pseudo-random bytes (xorshift).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
