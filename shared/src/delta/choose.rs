//! Which encoding a chunk travels as: every candidate that applies is sized at a cheap zstd
//! level (the screen) and only the smallest is encoded at full level ([`encode_best`],
//! [`encode_best_in_window`], [`encode_delta_in_window`]).

use super::covers::SuffixIndex;
use super::encode::{Prepared, encode, prepare, reference_in_window};
use super::format::{DeltaError, Encoded, Encoding};
use super::tensor::{choose_ops, tensors_body};
use super::{covers, kinship};
use crate::tensors::Segment;

/// The cheap candidates that use a reference, in the order they are tried; covers, the
/// expensive one, are considered separately.
pub(super) const REFERENCED: [Encoding; 5] = [
    Encoding::ZstdRef,
    Encoding::XorPlanes { width: 2 },
    Encoding::XorPlanes { width: 4 },
    Encoding::SubPlanes { width: 2 },
    Encoding::SubPlanes { width: 4 },
];

/// Tries every encoding that applies and keeps the smallest (ties go to the cheaper decode).
pub fn encode_best(new: &[u8], reference: Option<&[u8]>, level: i32) -> Encoded {
    let mut candidates = vec![Encoding::Zstd];
    if reference.is_some_and(|r| !r.is_empty()) {
        candidates.extend(REFERENCED);
        candidates.push(Encoding::Covers);
    }
    let mut best = Encoded {
        encoding: Encoding::Raw,
        payload: new.to_vec(),
    };
    for encoding in candidates {
        if let Ok(payload) = encode(encoding, new, reference, level)
            && payload.len() < best.payload.len()
        {
            best = Encoded { encoding, payload };
        }
    }
    best
}

/// Where covers get the suffix index of a window they search, asked only when covers are
/// tried (the caller's cache, say); without one, covers build it themselves.
pub type SuffixSource<'a> = &'a dyn Fn() -> std::sync::Arc<SuffixIndex>;

/// Like [`encode_best`], against a window whose aligned position for this chunk is `at`;
/// `tensors` is the chunk cut along the model's tensor layout (see [`crate::tensors`]) when
/// the artifact has one; `suffixes` gives the window's suffix index when the caller keeps
/// one (see [`super::SuffixCache`]), asked for only if covers are tried; it is built here
/// otherwise.
///
/// Candidates are screened at a cheap zstd level and only the winner is encoded at `level`:
/// running every candidate at level 19 cost twice the encode time for the same choice.
/// Without a layout, covers are tried besides the numeric guesses; with one, the tensor delta
/// replaces both, and no suffix sort is spent on weights.
pub fn encode_best_in_window(
    new: &[u8],
    window: &[u8],
    at: usize,
    tensors: Option<&[Segment]>,
    suffixes: Option<SuffixSource<'_>>,
    level: i32,
) -> Encoded {
    screen_and_encode(new, window, at, tensors, suffixes, level, false).unwrap_or_else(|| Encoded {
        encoding: Encoding::Raw,
        payload: new.to_vec(),
    })
}

/// Like [`encode_best_in_window`], but `None` when the screen finds that no window-based
/// encoding beats plain zstd: the caller then sends the chunk as it already has it
/// compressed, without spending a full-level encode on a delta that does not pay.
pub fn encode_delta_in_window(
    new: &[u8],
    window: &[u8],
    at: usize,
    tensors: Option<&[Segment]>,
    suffixes: Option<SuffixSource<'_>>,
    level: i32,
) -> Option<Encoded> {
    screen_and_encode(new, window, at, tensors, suffixes, level, true)
}

/// A candidate encoding, prepared and sized at the screening level.
pub(super) struct Screened<'a> {
    pub(super) size: usize,
    pub(super) encoding: Encoding,
    pub(super) prepared: Prepared<'a>,
}

/// Every encoding that applies to `new`, prepared and sized at the screening level, smallest
/// first.
pub(super) fn screen<'a>(
    new: &'a [u8],
    window: &'a [u8],
    at: usize,
    tensors: Option<&[Segment]>,
    suffixes: Option<SuffixSource<'_>>,
) -> Vec<Screened<'a>> {
    fn keep<'a>(
        scored: &mut Vec<Screened<'a>>,
        encoding: Encoding,
        prepared: Result<Prepared<'a>, DeltaError>,
    ) {
        if let Ok(prepared) = prepared
            && let Ok(screened) = prepared.compress(encoding, SCREEN)
        {
            scored.push(Screened {
                size: screened.len(),
                encoding,
                prepared,
            });
        }
    }
    let mut scored: Vec<Screened<'_>> = Vec::new();
    let referenced = |encoding: Encoding| {
        let reference = reference_in_window(encoding, window, at, new.len());
        if reference.is_empty() {
            Err(DeltaError::MissingReference(encoding))
        } else {
            prepare(encoding, new, Some(reference))
        }
    };
    keep(
        &mut scored,
        Encoding::Zstd,
        prepare(Encoding::Zstd, new, None),
    );
    // Without a layout nothing tells whether the window holds anything of the chunk; a cheap
    // look spares the window-based candidates when it does not. Models keep their tensor
    // delta: the layout pairs the tensors whatever their bytes.
    if tensors.is_none() && !kinship::related(new, window, at) {
        return scored;
    }
    keep(
        &mut scored,
        Encoding::ZstdRef,
        referenced(Encoding::ZstdRef),
    );
    match tensors {
        Some(segments)
            if segments
                .iter()
                .any(|s| s.width > 1 || s.reference.is_some()) =>
        {
            let ops = choose_ops(new, window, segments);
            keep(
                &mut scored,
                Encoding::Tensors,
                tensors_body(new, window, segments, |i| ops[i]).map(|body| {
                    // Bytes outside tensors (graph structure, headers) find their old copies
                    // through the window as a zstd prefix; inside tensors the prefix only
                    // costs time, so it is used where plain bytes are a real share.
                    let plain: usize = segments
                        .iter()
                        .filter(|s| s.width == 1 && s.reference.is_none())
                        .map(|s| s.len as usize)
                        .sum();
                    if plain * 32 >= new.len() {
                        Prepared::WithPrefix(body.into(), window)
                    } else {
                        Prepared::Alone(body.into())
                    }
                }),
            );
        }
        Some(_) => {}
        None => {
            for encoding in &REFERENCED[1..] {
                keep(&mut scored, *encoding, referenced(*encoding));
            }
            let reference = reference_in_window(Encoding::Covers, window, at, new.len());
            if !reference.is_empty() && !edited_in_place(&scored) {
                let index = suffixes.map(|get| get());
                let streams = covers::prepare(new, reference, index.as_deref());
                keep(&mut scored, Encoding::Covers, Ok(Prepared::Covers(streams)));
            }
        }
    }
    scored.sort_by_key(|x| x.size);
    scored
}

/// True when an aligned numeric delta sizes within 15 % of zstd with the whole window: the
/// chunk's old bytes sit where they were and it was edited in place. Covers earn their cost
/// (a suffix sort of the window, most of an encode's time) by re-finding old bytes that
/// moved, as in recompiled code; in place they find the same alignment. Measured at the
/// screen: on every chunk of four native pairs the aligned deltas were at least 1.3× zstd's
/// size, and covers were up to 4.9× smaller than the best cheap candidate; on a sparsely
/// edited 64 MiB artifact the aligned deltas were within 5 % on every changed chunk, and
/// covers saved 0.06 % of its bytes for 85 % of the coordinator's CPU during the update. The
/// bound sits between the two.
pub(super) fn edited_in_place(scored: &[Screened<'_>]) -> bool {
    let aligned = REFERENCED[1..]
        .iter()
        .filter_map(|e| screened_size(scored, *e))
        .min();
    match (aligned, screened_size(scored, Encoding::ZstdRef)) {
        (Some(aligned), Some(zstd_ref)) => aligned * 20 <= zstd_ref * 23,
        _ => false,
    }
}

/// The screened size of `encoding`, if it was screened.
pub(super) fn screened_size(scored: &[Screened<'_>], encoding: Encoding) -> Option<usize> {
    scored
        .iter()
        .find(|x| x.encoding == encoding)
        .map(|x| x.size)
}

/// The zstd level candidates are sized at before the winner is encoded at full level.
pub(super) const SCREEN: i32 = 3;

pub(super) fn screen_and_encode(
    new: &[u8],
    window: &[u8],
    at: usize,
    tensors: Option<&[Segment]>,
    suffixes: Option<SuffixSource<'_>>,
    level: i32,
    plain_is_enough: bool,
) -> Option<Encoded> {
    let scored = screen(new, window, at, tensors, suffixes);
    // A delta must beat plain zstd by 5 % at the screen to earn its full-level encode.
    let plain = screened_size(&scored, Encoding::Zstd);
    let pays = scored.first().is_some_and(|x| {
        x.encoding.needs_reference() && plain.is_none_or(|p| x.size * 20 < p * 19)
    });
    if plain_is_enough && !pays {
        return None;
    }
    let mut best = Encoded {
        encoding: Encoding::Raw,
        payload: new.to_vec(),
    };
    // The winner at full level; the runner-up too when the screen was close.
    let close = match scored.as_slice() {
        [first, second, ..] => second.size * 100 <= first.size * 105,
        _ => false,
    };
    for x in scored.iter().take(if close { 2 } else { 1 }) {
        if let Ok(payload) = x.prepared.compress(x.encoding, level)
            && payload.len() < best.payload.len()
        {
            best = Encoded {
                encoding: x.encoding,
                payload,
            };
        }
    }
    Some(best)
}
