//! Delta planning: which chunks of a target version a device already holds, and for each one
//! it lacks, which window of a version it holds the chunk should be encoded against.
//!
//! Pure and deterministic, so the agent and the coordinator compute the same plan from the
//! same indexes and agree on every window without negotiating it. A missing chunk's window is
//! placed by the nearest identical chunk before or after it ("anchor"): the target's offset
//! relative to the anchor is carried over to the anchor's place in the old version. With no
//! anchor in reach, the window sits at the same offset in the first source (the device's
//! current version). Windows are bounded, so encoder and decoder memory are bounded by the
//! window, not by the artifact.

use std::collections::HashMap;

use crate::chunk::ChunkIndex;
use crate::digest::Digest;
use crate::wire::{ChunkWant, WindowRef};

/// The window size agents plan with (and the coordinator precomputes for): 8 MiB, measured
/// by the transfer benchmark as the point past which larger windows stop paying.
pub const WINDOW: u64 = 8 * 1024 * 1024;

/// Where a chunk's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Identical bytes are on the device: copy `len` bytes at `offset` of source `source`.
    Copy {
        /// Index into the sources.
        source: usize,
        /// Offset in that source.
        offset: u64,
        /// Length.
        len: u32,
    },
    /// Fetch the chunk, encoded against `window` when there is one.
    Fetch {
        /// Index of the chunk in the target.
        chunk: usize,
        /// The reference window.
        window: Option<Window>,
    },
}

/// A byte range of a source version used as a delta reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// Index into the sources.
    pub source: usize,
    /// Start offset.
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// Where, relative to `offset`, the chunk's old bytes are estimated to start: the aligned
    /// reference for numeric (XOR) deltas.
    pub at: u64,
}

/// The plan for one target version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// One step per target chunk, in order.
    pub steps: Vec<Step>,
    /// Bytes copied from the device's own versions.
    pub bytes_local: u64,
    /// Bytes of chunks to fetch (before encoding).
    pub bytes_missing: u64,
}

impl Plan {
    /// The chunks to fetch, as requests naming each window by the whole-file hash of its source
    /// (`sources[i]` for source `i`).
    pub fn wants(&self, sources: &[Digest]) -> Vec<ChunkWant> {
        self.steps
            .iter()
            .filter_map(|step| match step {
                Step::Copy { .. } => None,
                Step::Fetch { chunk, window } => Some(ChunkWant {
                    // An index never has more than u32::MAX chunks (a 4 GiB chunk count).
                    ordinal: u32::try_from(*chunk).unwrap_or(u32::MAX),
                    reference: window.and_then(|w| {
                        sources.get(w.source).map(|file| WindowRef {
                            file: *file,
                            offset: w.offset,
                            len: w.len,
                            at: w.at,
                        })
                    }),
                }),
            })
            .collect()
    }
}

/// How far (in target chunks) to look for an anchor on each side of a missing chunk.
const ANCHOR_REACH: usize = 64;

/// Plans `target` given the `sources` (indexes of versions on the device, current first) and
/// the largest window allowed.
pub fn plan(target: &ChunkIndex, sources: &[ChunkIndex], window_max: u64) -> Plan {
    // Where each chunk content is available locally: first source wins, then lowest offset.
    let mut local: HashMap<Digest, (usize, u64)> = HashMap::new();
    for (s, index) in sources.iter().enumerate() {
        for (offset, c) in index.spans() {
            local.entry(c.hash).or_insert((s, offset));
        }
    }
    let offsets: Vec<u64> = target.spans().map(|(o, _)| o).collect();
    let found: Vec<Option<(usize, u64)>> = target
        .chunks
        .iter()
        .map(|c| local.get(&c.hash).copied())
        .collect();

    let mut steps = Vec::with_capacity(target.chunks.len());
    let (mut bytes_local, mut bytes_missing) = (0u64, 0u64);
    for (i, c) in target.chunks.iter().enumerate() {
        if let Some((source, offset)) = found[i] {
            bytes_local += u64::from(c.len);
            steps.push(Step::Copy {
                source,
                offset,
                len: c.len,
            });
            continue;
        }
        bytes_missing += u64::from(c.len);
        let estimate = anchor_estimate(i, &offsets, &found).or_else(|| {
            // No anchor: the same offset in the current version, if it reaches that far.
            sources.first().map(|_| (0, offsets[i]))
        });
        let window = estimate.and_then(|(source, position)| {
            window_around(position, c.len, sources[source].total_len(), window_max).map(
                |(offset, len)| Window {
                    source,
                    offset,
                    len,
                    at: position.saturating_sub(offset).min(len),
                },
            )
        });
        steps.push(Step::Fetch { chunk: i, window });
    }
    Plan {
        steps,
        bytes_local,
        bytes_missing,
    }
}

/// The window a chunk fetched without one is encoded against on a first install: up to
/// `window_max` bytes of the target itself just before the chunk at `offset`, which the
/// device has written by the time the chunk arrives (chunks are asked for and applied in file
/// order), in the file whose whole-file hash is `file`; `None` for the first chunk. zstd
/// over the whole file finds its matches in the same 8 MiB behind each byte; chunks
/// compressed alone start from nothing every megabyte.
pub fn install_window(file: Digest, offset: u64, window_max: u64) -> Option<WindowRef> {
    let len = offset.min(window_max);
    (len > 0).then(|| WindowRef {
        file,
        offset: offset - len,
        len,
        at: len,
    })
}

/// The estimated position of target chunk `i` in a source, from the nearest anchor.
fn anchor_estimate(
    i: usize,
    offsets: &[u64],
    found: &[Option<(usize, u64)>],
) -> Option<(usize, u64)> {
    let before = (i.saturating_sub(ANCHOR_REACH)..i)
        .rev()
        .find_map(|j| found[j].map(|f| (j, f)));
    let after =
        (i + 1..(i + 1 + ANCHOR_REACH).min(found.len())).find_map(|j| found[j].map(|f| (j, f)));
    let nearest = match (before, after) {
        (Some(b), Some(a)) => Some(if i - b.0 <= a.0 - i { b } else { a }),
        (b, a) => b.or(a),
    }?;
    let (j, (source, anchor_offset)) = nearest;
    // Carry the target's distance from the anchor over to the source.
    let position = if j < i {
        anchor_offset.checked_add(offsets[i] - offsets[j])
    } else {
        anchor_offset.checked_sub(offsets[j] - offsets[i])
    };
    Some((source, position.unwrap_or(0)))
}

/// A window of at most `window_max` bytes around `[position, position + len)`, centred to
/// within an eighth of the window, clamped to the source; `None` when the source is empty.
fn window_around(position: u64, len: u32, source_len: u64, window_max: u64) -> Option<(u64, u64)> {
    if source_len == 0 || window_max == 0 {
        return None;
    }
    let want = window_max.min(source_len);
    let slack = want.saturating_sub(u64::from(len)) / 2;
    let centred = position.saturating_sub(slack);
    // Snapped to a quarter-window grid where the slack allows, so neighbouring chunks name
    // the same window and the encoder sorts its suffixes once for them (a quarter: 2 % less
    // encode CPU than a half-window grid on the native pair, and 1.8 % fewer bytes).
    let grid = want / 4;
    let start = if grid > 0 && slack >= grid / 2 {
        centred.saturating_add(grid / 2) / grid * grid
    } else {
        centred
    };
    Some((start.min(source_len - want), want))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkIndex;
    use crate::testutil::{SMALL, noise};

    #[test]
    fn an_install_window_is_the_bytes_just_before_the_chunk() {
        let file = Digest::of(b"new");
        let range = |offset| install_window(file, offset, WINDOW).map(|w| (w.offset, w.len));
        assert_eq!(range(0), None);
        assert_eq!(range(100), Some((0, 100)));
        assert_eq!(range(WINDOW + 5), Some((5, WINDOW)));
        assert_eq!(range(u64::MAX), Some((u64::MAX - WINDOW, WINDOW)));
        assert_eq!(install_window(file, 7, 0), None);
        // The chunk follows the window, in the file itself.
        let w = install_window(file, 100, WINDOW).unwrap();
        assert_eq!((w.file, w.at), (file, w.len));
    }

    fn index(data: &[u8]) -> ChunkIndex {
        ChunkIndex::build(data, SMALL).unwrap().index
    }

    #[test]
    fn unchanged_chunks_are_copied_and_changed_ones_get_a_window_over_their_old_bytes() {
        let old = noise(1, 1 << 20);
        let mut new = old.clone();
        // Change bytes in the middle, and shift everything after by an insertion.
        for b in &mut new[500_000..500_100] {
            *b ^= 0xff;
        }
        new.splice(100_000..100_000, noise(2, 333));
        let (old_index, new_index) = (index(&old), index(&new));
        let plan = plan(&new_index, std::slice::from_ref(&old_index), 256 * 1024);
        assert_eq!(plan.bytes_local + plan.bytes_missing, new.len() as u64);
        assert!(
            plan.bytes_missing < 4 * u64::from(SMALL.max),
            "{}",
            plan.bytes_missing
        );

        let offsets: Vec<u64> = new_index.spans().map(|(o, _)| o).collect();
        for step in &plan.steps {
            match step {
                Step::Copy {
                    source,
                    offset,
                    len,
                } => {
                    let at = *offset as usize;
                    assert_eq!(*source, 0);
                    let chunk = &old[at..at + *len as usize];
                    assert!(
                        new_index
                            .chunks
                            .iter()
                            .any(|c| c.hash == crate::Digest::of(chunk))
                    );
                }
                Step::Fetch { chunk, window } => {
                    let w = window.expect("a window in the old version");
                    assert!(w.len <= 256 * 1024 && w.offset + w.len <= old.len() as u64);
                    // The window holds the old bytes this chunk was edited from: a 64-byte
                    // probe from the chunk's unchanged bytes (not the 333 inserted at 100,000
                    // nor the 100 flipped, now at 500,333) is found inside it.
                    let (start, end) = (
                        offsets[*chunk] as usize,
                        (offsets[*chunk] + u64::from(new_index.chunks[*chunk].len)) as usize,
                    );
                    let edited = |at: usize| {
                        (99_936..100_333).contains(&at) || (500_269..500_433).contains(&at)
                    };
                    let probe_at = (start..end - 64)
                        .step_by(97)
                        .find(|at| !edited(*at))
                        .expect("unchanged bytes");
                    let probe = &new[probe_at..probe_at + 64];
                    let win = &old[w.offset as usize..(w.offset + w.len) as usize];
                    assert!(
                        win.windows(64).any(|x| x == probe),
                        "chunk {chunk} window misplaced: {w:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_device_without_versions_fetches_everything_without_windows() {
        let data = noise(3, 100_000);
        let plan = plan(&index(&data), &[], 1 << 20);
        assert_eq!(plan.bytes_local, 0);
        assert!(
            plan.steps
                .iter()
                .all(|s| matches!(s, Step::Fetch { window: None, .. }))
        );
    }

    #[test]
    fn windows_never_leave_their_source_and_respect_the_bound() {
        for (position, len, source_len, max) in [
            (0u64, 100u32, 50u64, 1000u64),
            (10_000, 5000, 8000, 4096),
            (u64::MAX - 10, 10, 1 << 20, 1 << 16),
            (500, 10, 1000, 0),
        ] {
            if let Some((start, wlen)) = window_around(position, len, source_len, max) {
                assert!(
                    wlen <= max && start + wlen <= source_len,
                    "{position} {len} {source_len} {max}"
                );
            }
        }
        assert_eq!(window_around(0, 1, 0, 10), None);
    }

    #[test]
    fn neighbouring_chunks_share_a_window_that_holds_them() {
        const MIB: u64 = 1 << 20;
        let source = 64 * MIB;
        let windows: Vec<_> = (0..16u64)
            .map(|i| {
                let position = 20 * MIB + i * MIB / 2;
                let window = window_around(position, (MIB / 2) as u32, source, 8 * MIB);
                let (start, len) = window.unwrap_or_default();
                assert!(start <= position && position + MIB / 2 <= start + len);
                assert!(
                    start + MIB <= position,
                    "a megabyte of slack before {position}"
                );
                (start, len)
            })
            .collect();
        let mut distinct = windows.clone();
        distinct.dedup();
        assert!(
            distinct.len() <= 5,
            "{} windows for 16 chunks",
            distinct.len()
        );
        assert_eq!(
            window_around(u64::MAX - 1, 1, u64::MAX, 8 * MIB).map(|w| w.1),
            Some(8 * MIB)
        );
    }

    #[test]
    fn the_same_inputs_give_the_same_plan() {
        let old = noise(4, 300_000);
        let mut new = old.clone();
        new.truncate(250_000);
        new.extend(noise(5, 80_000));
        let (a, b) = (index(&old), index(&new));
        assert_eq!(
            plan(&b, std::slice::from_ref(&a), 1 << 18),
            plan(&b, std::slice::from_ref(&a), 1 << 18)
        );
    }
}
