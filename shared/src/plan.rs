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

use crate::digest::Digest;
use std::collections::HashMap;

use crate::chunk::ChunkIndex;
use crate::delta::window::around;
use crate::wire::{ChunkWant, WindowRef};

/// Where a chunk's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Identical bytes are on the device: copy `len` bytes at `offset` of source `source`.
    Copy {
        /// Index into the sources.
        source: usize,
        /// Offset in that source.
        offset: u64,
        /// Its length in bytes (the chunk's).
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
    /// Its length in bytes, at most the plan's window bound.
    pub len: u64,
    /// Where, relative to `offset`, the chunk's old bytes are estimated to start: the aligned
    /// reference for numeric (XOR) deltas.
    pub at: u64,
}

/// The plan for one target version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    /// One step per target chunk, in order.
    pub steps: Vec<Step>,
    /// Bytes copied from the device's own versions.
    pub bytes_local: u64,
    /// Bytes of chunks to fetch (before encoding).
    pub bytes_missing: u64,
}

impl ChunkPlan {
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
pub fn plan(target: &ChunkIndex, sources: &[ChunkIndex], window_max: u64) -> ChunkPlan {
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
            around(position, c.len, sources[source].total_len(), window_max).map(|(offset, len)| {
                Window {
                    source,
                    offset,
                    len,
                    at: position.saturating_sub(offset).min(len),
                }
            })
        });
        steps.push(Step::Fetch { chunk: i, window });
    }
    ChunkPlan {
        steps,
        bytes_local,
        bytes_missing,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkIndex;
    use crate::testutil::{SMALL, noise};

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
