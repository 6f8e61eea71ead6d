//! Whether a chunk has anything in common with its reference window, decided before any
//! window-based candidate is screened.
//!
//! Screening a chunk against its window costs a zstd pass with the whole window as prefix and
//! four numeric deltas: about 80 ms of a core per megabyte chunk. On an update whose bytes
//! share nothing with the version on the device (a re-encrypted or recompressed archive,
//! random data) every chunk paid it and lost: a 512 MiB update of new random bytes took
//! 19 s where installing it whole took 2.6 s. The test here is a few milliseconds and
//! answers "related" whenever in doubt; only a chunk it finds unrelated skips the screen.
//!
//! Two ways a delta can pay, so two checks:
//! - **aligned:** the old bytes sit where the chunk's bytes are (numeric deltas, edits in
//!   place): a share of equal bytes at the aligned position well above chance;
//! - **moved:** the chunk's content appears anywhere in the window (zstd with the window,
//!   covers): content-defined anchors (positions where a 16-byte rolling hash, mixed, has its
//!   top byte zero: one in 256 on average) of the chunk found in the window.

use std::collections::HashSet;

/// Whether `new` shares enough with `window` (whose bytes aligned with `new` start at `at`)
/// for a window-based encoding to be worth screening. False only when neither the aligned
/// bytes nor the content anchors show more than chance.
pub(super) fn related(new: &[u8], window: &[u8], at: usize) -> bool {
    let aligned_bytes = window.get(at..).unwrap_or_default();
    related_aligned(new, aligned_bytes) || moved(new, |found| anchors_of(window, found))
}

/// The second half of `related`, for a caller that holds a [`Sketch`] of each piece of the
/// window instead of the window: whether `new`'s content is found in it. Anchors whose 16
/// bytes straddle two pieces are missed, which can only make a chunk look less related by a
/// few anchors per megabyte.
pub fn related_moved(new: &[u8], window: &[&Sketch]) -> bool {
    moved(new, |found| {
        for anchor in window.iter().flat_map(|s| s.anchors.iter()) {
            if !found(*anchor) {
                return;
            }
        }
    })
}

/// The distinct content anchors of some bytes: what [`related_moved`] needs of a window
/// piece, about 3 % of its size.
#[derive(Debug)]
pub struct Sketch {
    /// Sorted, distinct.
    anchors: Box<[u64]>,
}

impl Sketch {
    /// The sketch of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut anchors = Vec::with_capacity(bytes.len() / 200);
        anchors_of(bytes, |h| {
            anchors.push(h);
            true
        });
        anchors.sort_unstable();
        anchors.dedup();
        Sketch {
            anchors: anchors.into_boxed_slice(),
        }
    }

    /// Bytes of memory it holds.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.anchors)
    }
}

/// The first half of `related`, for a caller that has not read the window: whether `new`
/// shares enough with the window's bytes aligned with it (`aligned_bytes`, as many as the
/// window has). Cheap: ask it first.
///
/// Equal bytes at the aligned position, over at least 1 in `ALIGNED_SHARE` of those
/// compared (unrelated random bytes: 1 in 256; weights nudged by training: their sign and
/// exponent bytes, a quarter or more).
pub fn related_aligned(new: &[u8], aligned_bytes: &[u8]) -> bool {
    let compared = new.len().min(aligned_bytes.len());
    if compared == 0 {
        return false;
    }
    let equal = new
        .iter()
        .zip(aligned_bytes)
        .filter(|(a, b)| a == b)
        .count();
    equal * ALIGNED_SHARE > compared
}

/// One equal byte in this many at the aligned position counts as related: 5 times chance.
const ALIGNED_SHARE: usize = 50;

/// At least 1 in [`MOVED_SHARE`] of the chunk's distinct anchors are among the window's,
/// which `window` feeds to the callback it is given (stopping when that returns false). A
/// chunk with too few distinct anchors to judge (long runs of one byte) counts as related.
fn moved(new: &[u8], window: impl FnOnce(&mut dyn FnMut(u64) -> bool)) -> bool {
    let mut wanted = HashSet::new();
    anchors_of(new, |h| {
        wanted.insert(h);
        wanted.len() < MAX_ANCHORS
    });
    if wanted.len() < MIN_ANCHORS {
        return true;
    }
    let need = (wanted.len() / MOVED_SHARE).max(2);
    let mut found = 0;
    window(&mut |h| {
        if wanted.remove(&h) {
            found += 1;
        }
        found < need
    });
    found >= need
}

/// A fiftieth of a chunk found in the window saves at most 2 %, under the 5 % a delta must
/// beat plain zstd by at the screen.
const MOVED_SHARE: usize = 50;
/// Fewer distinct anchors than this cannot tell related from unrelated.
const MIN_ANCHORS: usize = 16;
/// Anchors kept of one chunk (a 16 MiB chunk has about this many).
const MAX_ANCHORS: usize = 1 << 16;

/// Calls `each` with the rolling hash at every anchor of `bytes` until it returns false: the
/// hash covers the last [`CONTEXT`] bytes, and an anchor is a position where that hash, mixed,
/// has its top byte zero.
fn anchors_of(bytes: &[u8], mut each: impl FnMut(u64) -> bool) {
    let mut h = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        // Shifted by 4 per byte: a byte's contribution leaves after 16 more.
        h = (h << 4).wrapping_add(GEAR[usize::from(b)]);
        if i + 1 >= CONTEXT && h.wrapping_mul(MIX) >> 56 == 0 && !each(h) {
            return;
        }
    }
}

/// Bytes an anchor's hash covers. Short, because rebuilt code keeps few long runs: a linker
/// that moves a function rewrites an address every few instructions, and what stays the same
/// between two of them is what covers and zstd find.
const CONTEXT: usize = 16;
/// An odd constant that spreads every bit of the hash into its top byte.
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// Random 64-bit values, one per byte value (splitmix64 from a fixed seed).
static GEAR: [u64; 256] = gear();

const fn gear() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state = 0x5EED_F0E2_2026_0001_u64;
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::noise;

    #[test]
    fn unrelated_random_bytes_are_unrelated() {
        let window = noise(1, 4 * 1024 * 1024);
        let new = noise(2, 1024 * 1024);
        assert!(!related(&new, &window, 1024 * 1024));
        let pieces: Vec<Sketch> = window.chunks(1024 * 1024).map(Sketch::of).collect();
        let pieces: Vec<&Sketch> = pieces.iter().collect();
        assert!(!related_aligned(&new, &window[1024 * 1024..]));
        assert!(!related_moved(&new, &pieces));
    }

    #[test]
    fn sketches_of_the_window_find_what_the_window_finds() {
        let window = noise(6, 4 * 1024 * 1024);
        let mut moved = noise(7, 1024 * 1024);
        moved[100_000..160_000].copy_from_slice(&window[2_500_000..2_560_000]);
        let pieces: Vec<Sketch> = window.chunks(700_000).map(Sketch::of).collect();
        let pieces: Vec<&Sketch> = pieces.iter().collect();
        assert!(related(&moved, &window, 0));
        assert!(related_moved(&moved, &pieces));
        // A sketch holds about one anchor in 256 bytes.
        let sketch = Sketch::of(&window);
        assert!(
            (12_000..20_000).contains(&sketch.anchors.len()),
            "{}",
            sketch.anchors.len()
        );
        assert!(sketch.anchors.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn moved_and_aligned_content_is_related() {
        let window = noise(3, 4 * 1024 * 1024);
        // A tenth of the chunk copied from elsewhere in the window, the rest new.
        let mut moved = noise(4, 1024 * 1024);
        moved[500_000..605_000].copy_from_slice(&window[3_000_000..3_105_000]);
        assert!(related(&moved, &window, 0));
        // The old bytes where they were, every fifth byte changed.
        let mut edited = window[1_000_000..2_000_000].to_vec();
        for b in edited.iter_mut().step_by(5) {
            *b = b.wrapping_add(1);
        }
        for b in edited.iter_mut().skip(1).step_by(5) {
            *b = b.wrapping_add(1);
        }
        assert!(related(&edited, &window, 1_000_000));
        // Runs of one byte: too few anchors to judge.
        assert!(related(&vec![7u8; 1024 * 1024], &window, 0));
    }

    #[test]
    fn nudged_weights_are_related_at_their_alignment() {
        // Weights in [-0.5, 0.5), each nudged: no 16 bytes in a row stay the same.
        let old: Vec<u8> = noise(5, 1024 * 1024)
            .chunks_exact(4)
            .flat_map(|w| {
                let x = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as f32 / u32::MAX as f32;
                (x - 0.5).to_le_bytes()
            })
            .collect();
        let new: Vec<u8> = old
            .chunks_exact(4)
            .map(|w| f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .flat_map(|x| (x * 1.0003 + 1e-5).to_le_bytes())
            .collect();
        assert!(!moved(&new, |found| anchors_of(&old, found)));
        assert!(related(&new, &old, 0));
    }
}
