//! Chunk encodings: how a changed chunk travels, and how a device turns it back into bytes.
//!
//! A chunk is sent as the smallest of: its raw bytes, zstd, zstd with a *reference window*
//! (bytes of a version the device already holds) as prefix, covers of the window plus
//! literals ([`Encoding::Covers`], for native code), or a numeric delta for tensors: with the
//! model's tensor layout, each tensor piece XORed or subtracted from its old twin (or alone
//! when retrained) and split into byte planes ([`Encoding::Tensors`]); without one, the same
//! at the chunk's own offset and a guessed width. [`encode_best`] and
//! [`encode_best_in_window`] try them and keep the smallest. bsdiff against the window is
//! still decoded (caches and older coordinators hold such deltas) but no longer chosen:
//! covers were smaller on every chunk of the native pairs, at a fraction of the time.
//!
//! Decoders treat every byte as hostile. They never produce more than the declared chunk
//! length (allocations are sized by it, never by the payload), cap zstd's window, and check
//! control data before acting on it: bsdiff's triples as they stream past, before the bsdiff
//! crate sees them (each must make progress, stay inside the reference window and the
//! declared length), and each cover against the window and the declared length. The caller
//! still verifies the result against the chunk's signed hash.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use crate::tensors::{Segment, SegmentOp};

mod covers;
mod kinship;

pub use covers::{SuffixCache, SuffixIndex};
pub use kinship::{Sketch, related_aligned, related_moved};

/// How a chunk is encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// The bytes as they are.
    Raw,
    /// zstd.
    Zstd,
    /// zstd with the reference window as prefix (what `zstd --patch-from` does).
    ZstdRef,
    /// bsdiff against the reference window, then zstd.
    Bsdiff,
    /// XOR with the reference at the same offsets, split into `width` byte planes, then zstd:
    /// for numeric tensors whose values move a little between versions.
    XorPlanes {
        /// Element width in bytes (1, 2, 4 or 8).
        width: u8,
    },
    /// Like `XorPlanes`, but each little-endian element is the wrapping integer difference
    /// new − old: nearby floats differ by a small integer, where XOR shows carry noise.
    SubPlanes {
        /// Element width in bytes (1, 2, 4 or 8).
        width: u8,
    },
    /// The tensor delta: the chunk cut along the model's tensor layout into segments, each
    /// XORed with (or bytewise subtracted from) the same tensor of the old version where the
    /// window holds it, or alone, then split into byte planes of its element width; zstd over a
    /// segment table and the planes, with the window as prefix so bytes outside tensors match
    /// their old copies. The table travels in the payload, so the decoder needs no layout. See
    /// [`crate::tensors`].
    Tensors,
    /// Covers of the reference window (runs of it, each with a byte of difference per byte,
    /// mostly zero) and literal bytes, in separately compressed streams: HDiffPatch's approach,
    /// for native code. See [`covers`].
    Covers,
}

impl std::fmt::Display for Encoding {
    /// The short name status reports use (`zstd-ref`, `xor-planes-4`, `tensors`, …).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Encoding::Raw => f.write_str("raw"),
            Encoding::Zstd => f.write_str("zstd"),
            Encoding::ZstdRef => f.write_str("zstd-ref"),
            Encoding::Bsdiff => f.write_str("bsdiff"),
            Encoding::XorPlanes { width } => write!(f, "xor-planes-{width}"),
            Encoding::SubPlanes { width } => write!(f, "sub-planes-{width}"),
            Encoding::Tensors => f.write_str("tensors"),
            Encoding::Covers => f.write_str("covers"),
        }
    }
}

impl Encoding {
    /// True when decoding needs the reference window.
    pub fn needs_reference(self) -> bool {
        matches!(
            self,
            Encoding::ZstdRef
                | Encoding::Bsdiff
                | Encoding::XorPlanes { .. }
                | Encoding::SubPlanes { .. }
                | Encoding::Tensors
                | Encoding::Covers
        )
    }
}

/// An encoded chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// How.
    pub encoding: Encoding,
    /// The bytes to send.
    pub payload: Vec<u8>,
}

/// Bounds a decoder enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest chunk accepted (declared length).
    pub max_chunk: usize,
    /// Largest reference window accepted.
    pub max_reference: usize,
}

impl Limits {
    /// Ferry's defaults: chunks up to 16 MiB (FastCDC's largest maximum), windows up to 64 MiB.
    pub const DEFAULT: Limits = Limits {
        max_chunk: 16 * 1024 * 1024,
        max_reference: 64 * 1024 * 1024,
    };

    /// The zstd window (log2) a streaming decoder allows (a bsdiff patch's): enough for window
    /// plus chunk, no more. Chunk frames decode in one call into their declared length and
    /// hold no window of their own.
    fn window_log(&self) -> u32 {
        let span = (self.max_reference + self.max_chunk).max(1 << 20) as u64;
        (64 - (span - 1).leading_zeros()).clamp(20, 30)
    }
}

/// Why a chunk could not be decoded (or encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// The declared length is over the limit.
    #[error("declared chunk length {declared} exceeds the limit of {limit} bytes")]
    ChunkTooLarge {
        /// Declared.
        declared: usize,
        /// Limit.
        limit: usize,
    },
    /// The reference window is over the limit.
    #[error("reference window of {len} bytes exceeds the limit of {limit} bytes")]
    ReferenceTooLarge {
        /// Given.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// The encoding needs a reference and none was given.
    #[error("{0:?} needs a reference window")]
    MissingReference(Encoding),
    /// The data would decode past the declared length.
    #[error("{encoding:?} data decodes to more than the declared {declared} bytes")]
    TooLong {
        /// Encoding.
        encoding: Encoding,
        /// Declared.
        declared: usize,
    },
    /// The data decodes to fewer bytes than declared.
    #[error("{encoding:?} data decodes to {actual} bytes, not the declared {declared}")]
    WrongLength {
        /// Encoding.
        encoding: Encoding,
        /// Produced.
        actual: usize,
        /// Declared.
        declared: usize,
    },
    /// bsdiff control data that points outside the window or the chunk, or makes no progress.
    #[error("bsdiff control data rejected: {0}")]
    Control(String),
    /// Undecodable data.
    #[error("corrupt {encoding:?} data: {reason}")]
    Corrupt {
        /// Encoding.
        encoding: Encoding,
        /// Decoder message.
        reason: String,
    },
    /// An element width other than 1, 2, 4 or 8.
    #[error("unsupported element width {0}")]
    BadWidth(u8),
}

/// Encodes `new` as `encoding` (`reference` where the encoding needs one).
pub fn encode(
    encoding: Encoding,
    new: &[u8],
    reference: Option<&[u8]>,
    level: i32,
) -> Result<Vec<u8>, DeltaError> {
    match prepare(encoding, new, reference)? {
        Prepared::Bytes(bytes) => Ok(bytes),
        prepared => prepared.compress(encoding, level),
    }
}

/// The highest zstd level [`Encoding::ZstdRef`] is encoded at. Above it zstd's optimal parsers
/// (btopt, btultra) index every position of the multi-MiB window: on the native-library pair
/// that was 2.3 s per chunk, three times the whole-file bsdiff budget, for 6 % fewer bytes.
const PREFIX_LEVEL_CAP: i32 = 12;

/// What an encoding hands to zstd: computed once, compressible at several levels.
enum Prepared<'a> {
    /// Sent as is (raw).
    Bytes(Vec<u8>),
    /// zstd-compressed alone (plain data, a bsdiff patch, XOR planes).
    Alone(std::borrow::Cow<'a, [u8]>),
    /// zstd-compressed with a reference prefix.
    WithPrefix(std::borrow::Cow<'a, [u8]>, &'a [u8]),
    /// The streams of a covers delta, each compressed alone.
    Covers(covers::Streams),
}

impl Prepared<'_> {
    fn compress(&self, encoding: Encoding, level: i32) -> Result<Vec<u8>, DeltaError> {
        let corrupt = |e: io::Error| DeltaError::Corrupt {
            encoding,
            reason: e.to_string(),
        };
        match self {
            Prepared::Bytes(b) => Ok(b.clone()),
            Prepared::Alone(b) => zstd_alone_bounded(b, level).map_err(corrupt),
            Prepared::WithPrefix(new, prefix) => {
                // The tensor delta's prefix serves only its few plain bytes: full level.
                let level = match encoding {
                    Encoding::ZstdRef => level.min(PREFIX_LEVEL_CAP),
                    _ => level,
                };
                zstd_with_prefix_bounded(new, prefix, level).map_err(corrupt)
            }
            Prepared::Covers(streams) => streams.compress(level).map_err(corrupt),
        }
    }
}

fn prepare<'a>(
    encoding: Encoding,
    new: &'a [u8],
    reference: Option<&'a [u8]>,
) -> Result<Prepared<'a>, DeltaError> {
    let reference_of = || reference.ok_or(DeltaError::MissingReference(encoding));
    Ok(match encoding {
        Encoding::Raw => Prepared::Bytes(new.to_vec()),
        Encoding::Zstd => Prepared::Alone(new.into()),
        Encoding::ZstdRef => Prepared::WithPrefix(new.into(), reference_of()?),
        Encoding::Bsdiff => {
            let mut patch = Vec::new();
            bsdiff::diff(reference_of()?, new, &mut patch).map_err(|e| DeltaError::Corrupt {
                encoding,
                reason: e.to_string(),
            })?;
            Prepared::Alone(patch.into())
        }
        Encoding::XorPlanes { width } => {
            check_width(width)?;
            Prepared::Alone(to_planes(&xor_with(new, reference_of()?), usize::from(width)).into())
        }
        Encoding::SubPlanes { width } => {
            check_width(width)?;
            let w = usize::from(width);
            Prepared::Alone(to_planes(&element_diff(new, reference_of()?, w, false), w).into())
        }
        Encoding::Covers => Prepared::Covers(covers::prepare(new, reference_of()?, None)),
        Encoding::Tensors => {
            // Without a layout: the whole chunk as one 4-byte tensor, XORed where the
            // reference reaches.
            let reference = reference_of()?;
            let whole = [Segment {
                len: u32::try_from(new.len()).map_err(|_| DeltaError::ChunkTooLarge {
                    declared: new.len(),
                    limit: u32::MAX as usize,
                })?,
                width: 4,
                reference: (reference.len() >= new.len()).then_some(0),
            }];
            Prepared::WithPrefix(
                tensors_body(new, reference, &whole, |_| SegmentOp::Xor)?.into(),
                reference,
            )
        }
    })
}

/// One row of a tensor delta's segment table.
#[derive(Serialize, Deserialize)]
struct TableRow {
    len: u32,
    width: u8,
    op: SegmentOp,
    reference: u32,
}

/// Largest segment table a decoder accepts (bytes, before the planes).
const MAX_TABLE: usize = 1 << 20;

/// The body of a tensor delta: the segment table, then the segments' bytes, each combined
/// with its old bytes by its op, as byte planes. Planes are laid out plane-major across
/// segments (every segment's first plane, then every second plane, …), so like bytes of all
/// tensors sit together for zstd; whatever does not fill a whole element follows last.
fn tensors_body(
    new: &[u8],
    reference: &[u8],
    segments: &[Segment],
    ops: impl Fn(usize) -> SegmentOp,
) -> Result<Vec<u8>, DeltaError> {
    let bad = |reason: &str| DeltaError::Corrupt {
        encoding: Encoding::Tensors,
        reason: reason.into(),
    };
    let rows: Vec<TableRow> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| TableRow {
            len: s.len,
            width: s.width,
            op: if s.reference.is_some() {
                ops(i)
            } else {
                SegmentOp::Alone
            },
            reference: s.reference.unwrap_or(0),
        })
        .collect();
    let mut combined = Vec::with_capacity(rows.len());
    let mut at = 0usize;
    for row in &rows {
        check_width(row.width)?;
        let len = row.len as usize;
        let data = new
            .get(at..at + len)
            .ok_or_else(|| bad("segments run past the chunk"))?;
        let old = match row.op {
            SegmentOp::Alone => &[][..],
            _ => reference_slice(reference, row.reference, len)
                .ok_or_else(|| bad("segment reference outside the window"))?,
        };
        combined.push(combine(data, old, row.op, false));
        at += len;
    }
    if at != new.len() {
        return Err(bad("segments do not cover the chunk"));
    }
    let mut body = postcard::to_allocvec(&rows).map_err(|e| bad(&e.to_string()))?;
    body.reserve(new.len());
    let widths: Vec<usize> = rows.iter().map(|r| usize::from(r.width)).collect();
    for plane in 0..8 {
        for (bytes, &width) in combined.iter().zip(&widths).filter(|(_, w)| **w > plane) {
            body.extend(bytes.chunks_exact(width).map(|element| element[plane]));
        }
    }
    for (bytes, &width) in combined.iter().zip(&widths) {
        body.extend_from_slice(bytes.chunks_exact(width).remainder());
    }
    Ok(body)
}

/// A segment's bytes combined with its old bytes by `op` (`undo`: the inverse).
fn combine(data: &[u8], old: &[u8], op: SegmentOp, undo: bool) -> Vec<u8> {
    match op {
        SegmentOp::Alone => data.to_vec(),
        SegmentOp::Xor => xor_with(data, old),
        SegmentOp::Sub => byte_diff(data, old, undo),
    }
}

/// For each segment with a reference, the op whose planes compress smallest at a fast level:
/// XOR or difference for a tensor that moved a little, alone for one that was retrained.
fn choose_ops(new: &[u8], reference: &[u8], segments: &[Segment]) -> Vec<SegmentOp> {
    let mut at = 0usize;
    segments
        .iter()
        .map(|s| {
            let len = s.len as usize;
            let data = new.get(at..at + len).unwrap_or_default();
            at += len;
            let Some(old) = s.reference.and_then(|r| reference_slice(reference, r, len)) else {
                return SegmentOp::Alone;
            };
            let cost = |op| {
                let planes = to_planes(&combine(data, old, op, false), usize::from(s.width));
                zstd::bulk::compress(&planes, 1).map_or(usize::MAX, |c| c.len())
            };
            [SegmentOp::Xor, SegmentOp::Sub, SegmentOp::Alone]
                .into_iter()
                .min_by_key(|op| cost(*op))
                .unwrap_or(SegmentOp::Xor)
        })
        .collect()
}

/// `reference[at..at + len]`, if it is inside.
fn reference_slice(reference: &[u8], at: u32, len: usize) -> Option<&[u8]> {
    let at = at as usize;
    reference.get(at..at.checked_add(len)?)
}

/// Rebuilds a chunk of `declared` bytes from a decompressed tensor delta, checking the
/// table: widths, segment lengths summing to the chunk, references inside the window.
fn tensors_restore(body: &[u8], reference: &[u8], declared: usize) -> Result<Vec<u8>, DeltaError> {
    let bad = |reason: String| DeltaError::Corrupt {
        encoding: Encoding::Tensors,
        reason,
    };
    let (rows, planes): (Vec<TableRow>, &[u8]) =
        postcard::take_from_bytes(body).map_err(|e| bad(format!("segment table: {e}")))?;
    if planes.len() != declared {
        return Err(DeltaError::WrongLength {
            encoding: Encoding::Tensors,
            actual: planes.len(),
            declared,
        });
    }
    // The table first: widths valid, lengths summing to the chunk, references in the window.
    let mut covered = 0usize;
    for row in &rows {
        check_width(row.width)?;
        covered = covered
            .checked_add(row.len as usize)
            .filter(|c| *c <= declared)
            .ok_or_else(|| bad("segments run past the declared length".into()))?;
        if row.op != SegmentOp::Alone
            && reference_slice(reference, row.reference, row.len as usize).is_none()
        {
            return Err(bad(format!(
                "segment reference {}+{} outside the {}-byte window",
                row.reference,
                row.len,
                reference.len()
            )));
        }
    }
    if covered != declared {
        return Err(bad(format!("segments cover {covered} of {declared} bytes")));
    }
    // Then the planes, in the order `tensors_body` wrote them.
    let mut segments: Vec<Vec<u8>> = rows.iter().map(|r| vec![0u8; r.len as usize]).collect();
    let mut cursor = planes.iter();
    for plane in 0..8 {
        for (bytes, row) in segments.iter_mut().zip(&rows) {
            let width = usize::from(row.width);
            if width > plane {
                for element in bytes.chunks_exact_mut(width) {
                    element[plane] = *cursor.next().unwrap_or(&0);
                }
            }
        }
    }
    let mut out = Vec::with_capacity(declared);
    for (mut bytes, row) in segments.into_iter().zip(&rows) {
        let width = usize::from(row.width);
        for slot in bytes.chunks_exact_mut(width).into_remainder() {
            *slot = *cursor.next().unwrap_or(&0);
        }
        if row.op != SegmentOp::Alone {
            let old =
                reference_slice(reference, row.reference, row.len as usize).unwrap_or_default();
            bytes = combine(&bytes, old, row.op, true);
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

impl Encoding {
    /// Every encoding a decoder accepts (element widths 1, 2, 4 and 8).
    pub const EVERY: [Encoding; 14] = [
        Encoding::Raw,
        Encoding::Zstd,
        Encoding::ZstdRef,
        Encoding::Bsdiff,
        Encoding::XorPlanes { width: 1 },
        Encoding::XorPlanes { width: 2 },
        Encoding::XorPlanes { width: 4 },
        Encoding::XorPlanes { width: 8 },
        Encoding::SubPlanes { width: 1 },
        Encoding::SubPlanes { width: 2 },
        Encoding::SubPlanes { width: 4 },
        Encoding::SubPlanes { width: 8 },
        Encoding::Tensors,
        Encoding::Covers,
    ];
}

/// The cheap candidates that use a reference, in the order they are tried; covers, the
/// expensive one, are considered separately.
const REFERENCED: [Encoding; 5] = [
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

/// The reference an encoding uses inside a window, for a chunk of `len` bytes whose old bytes
/// are estimated to start at `at`. Numeric deltas XOR against the aligned slice from `at`;
/// bsdiff gets the old bytes with half a chunk of slack either side, because its cost is a
/// suffix sort of the whole reference (three chunk lengths cost a second per chunk on the
/// native-library pair, for 0.1 % of bytes); zstd and covers search the whole window
/// (narrowing it cost 13 % more bytes with zstd, 6 % with covers, on that pair). Encoder and
/// decoder both derive it from the same plan.
pub fn reference_in_window(encoding: Encoding, window: &[u8], at: usize, len: usize) -> &[u8] {
    let at = at.min(window.len());
    match encoding {
        Encoding::XorPlanes { .. } | Encoding::SubPlanes { .. } => &window[at..],
        Encoding::Bsdiff => {
            let start = at.saturating_sub(len / 2).min(window.len());
            let end = at.saturating_add(len + len / 2).min(window.len());
            &window[start..end]
        }
        _ => window,
    }
}

/// Where covers get the suffix index of a window they search, asked only when covers are
/// tried (the caller's cache, say); without one, covers build it themselves.
pub type SuffixSource<'a> = &'a dyn Fn() -> std::sync::Arc<SuffixIndex>;

/// Like [`encode_best`], against a window whose aligned position for this chunk is `at`;
/// `tensors` is the chunk cut along the model's tensor layout (see [`crate::tensors`]) when
/// the artifact has one; `suffixes` gives the window's suffix index when the caller keeps
/// one (see [`SuffixCache`]), asked for only if covers are tried; it is built here otherwise.
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
struct Screened<'a> {
    size: usize,
    encoding: Encoding,
    prepared: Prepared<'a>,
}

/// Every encoding that applies to `new`, prepared and sized at the screening level, smallest
/// first.
fn screen<'a>(
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
fn edited_in_place(scored: &[Screened<'_>]) -> bool {
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
fn screened_size(scored: &[Screened<'_>], encoding: Encoding) -> Option<usize> {
    scored
        .iter()
        .find(|x| x.encoding == encoding)
        .map(|x| x.size)
}

/// The zstd level candidates are sized at before the winner is encoded at full level.
const SCREEN: i32 = 3;

fn screen_and_encode(
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

/// Decodes a chunk that [`encode_best_in_window`] encoded against `window` with the chunk's
/// old bytes estimated at `at`; `window` is `None` for a chunk sent on its own.
pub fn decode_in_window(
    encoding: Encoding,
    payload: &[u8],
    window: Option<(&[u8], usize)>,
    declared: usize,
    limits: &Limits,
) -> Result<Vec<u8>, DeltaError> {
    decode_in_window_reusing(encoding, payload, window, declared, limits, Vec::new())
}

/// [`decode_in_window`], decoding into `buffer`'s allocation where the encoding allows (plain
/// bytes and zstd, with or without a window). A device decoding chunk after chunk hands back
/// the last chunk's buffer: a fresh one per chunk is a fresh mapping (chunks are larger than
/// the allocator's mapping threshold), and faulting its pages in cost more than decoding.
pub fn decode_in_window_reusing(
    encoding: Encoding,
    payload: &[u8],
    window: Option<(&[u8], usize)>,
    declared: usize,
    limits: &Limits,
    buffer: Vec<u8>,
) -> Result<Vec<u8>, DeltaError> {
    let reference = window.map(|(window, at)| reference_in_window(encoding, window, at, declared));
    decode_reusing(encoding, payload, reference, declared, limits, buffer)
}

/// Decodes a chunk declared to be `declared` bytes long.
pub fn decode(
    encoding: Encoding,
    payload: &[u8],
    reference: Option<&[u8]>,
    declared: usize,
    limits: &Limits,
) -> Result<Vec<u8>, DeltaError> {
    decode_reusing(encoding, payload, reference, declared, limits, Vec::new())
}

/// [`decode`] into `buffer`'s allocation where the encoding allows.
fn decode_reusing(
    encoding: Encoding,
    payload: &[u8],
    reference: Option<&[u8]>,
    declared: usize,
    limits: &Limits,
    mut buffer: Vec<u8>,
) -> Result<Vec<u8>, DeltaError> {
    if declared > limits.max_chunk {
        return Err(DeltaError::ChunkTooLarge {
            declared,
            limit: limits.max_chunk,
        });
    }
    let reference = match (encoding.needs_reference(), reference) {
        (false, _) => &[][..],
        (true, None) => return Err(DeltaError::MissingReference(encoding)),
        (true, Some(r)) if r.len() > limits.max_reference => {
            return Err(DeltaError::ReferenceTooLarge {
                len: r.len(),
                limit: limits.max_reference,
            });
        }
        (true, Some(r)) => r,
    };
    // Only these decode into `buffer`; the others free it before they allocate their own.
    if !matches!(encoding, Encoding::Raw | Encoding::Zstd | Encoding::ZstdRef) {
        buffer = Vec::new();
    }
    let out = match encoding {
        Encoding::Raw => {
            if payload.len() > declared {
                return Err(DeltaError::TooLong { encoding, declared });
            }
            buffer.clear();
            buffer.extend_from_slice(payload);
            buffer
        }
        Encoding::Zstd => zstd_bounded(encoding, payload, None, declared, buffer)?,
        Encoding::ZstdRef => zstd_bounded(encoding, payload, Some(reference), declared, buffer)?,
        Encoding::Bsdiff => bspatch_checked(payload, reference, declared, limits)?,
        Encoding::XorPlanes { width } => {
            check_width(width)?;
            let planes = zstd_bounded(encoding, payload, None, declared, Vec::new())?;
            xor_with(&from_planes(&planes, usize::from(width)), reference)
        }
        Encoding::SubPlanes { width } => {
            check_width(width)?;
            let w = usize::from(width);
            let planes = zstd_bounded(encoding, payload, None, declared, Vec::new())?;
            element_diff(&from_planes(&planes, w), reference, w, true)
        }
        Encoding::Tensors => {
            let body = zstd_bounded(
                encoding,
                payload,
                Some(reference),
                declared + MAX_TABLE,
                Vec::new(),
            )?;
            tensors_restore(&body, reference, declared)?
        }
        Encoding::Covers => covers::restore(payload, reference, declared)?,
    };
    if out.len() != declared {
        return Err(DeltaError::WrongLength {
            encoding,
            actual: out.len(),
            declared,
        });
    }
    Ok(out)
}

fn check_width(width: u8) -> Result<(), DeltaError> {
    if matches!(width, 1 | 2 | 4 | 8) {
        Ok(())
    } else {
        Err(DeltaError::BadWidth(width))
    }
}

/// The level from which Ferry's own window-prefixed encodes cap their match tables (below it
/// zstd's own tables are smaller than the cap).
const MATCH_TABLE_CAP_FROM: i32 = 6;
/// log2 of the entries of each match table Ferry's window-prefixed encodes allow.
const MATCH_TABLE_LOG: u32 = 20;

/// zstd with `prefix` as a reference the frame may copy from (what `zstd --patch-from
/// --long` does), at exactly `level`, with zstd's own table sizes; the window covers both.
/// [`decode`] reads it as [`Encoding::ZstdRef`]. (The benches' anchor; Ferry encodes with
/// bounded tables.)
pub fn zstd_with_prefix(new: &[u8], prefix: &[u8], level: i32) -> io::Result<Vec<u8>> {
    prefix_encode(new, prefix, level, None)
}

/// [`zstd_with_prefix`] with the match tables capped from [`MATCH_TABLE_CAP_FROM`] on.
fn zstd_with_prefix_bounded(new: &[u8], prefix: &[u8], level: i32) -> io::Result<Vec<u8>> {
    prefix_encode(new, prefix, level, Some(DELTA_TABLES))
}

/// Match-table sizes (log2 of the entries of zstd's hash and chain tables) of an encode.
#[derive(Clone, Copy)]
struct Tables {
    hash_log: u32,
    chain_log: u32,
}

/// Deltas: 2^20 entries each, 9 MiB an encode (see [`prefix_encode`]).
const DELTA_TABLES: Tables = Tables {
    hash_log: MATCH_TABLE_LOG,
    chain_log: MATCH_TABLE_LOG,
};

/// First installs (see [`encode_after_own_prefix`]): 48 MiB of tables. On a 30 MiB native
/// library with 8 MiB prefixes, 2^20 each sent 2.9 % more than zstd -19 over the whole file,
/// these 0.6 %, and zstd's own level-19 tables (80 MiB) 0.5 %.
const INSTALL_TABLES: Tables = Tables {
    hash_log: 22,
    chain_log: 23,
};

/// A chunk of a first install, encoded against the bytes of the same file just before it
/// (see [`crate::plan::install_window`]) as [`Encoding::ZstdRef`] at `level`, or plain zstd
/// when there is no prefix. Not capped at the delta's level: a first install is encoded once
/// per release, ahead of the devices, and must not send more than whole-file zstd would.
pub fn encode_after_own_prefix(new: &[u8], prefix: &[u8], level: i32) -> io::Result<Encoded> {
    if prefix.is_empty() {
        return Ok(Encoded {
            encoding: Encoding::Zstd,
            payload: zstd_alone(new, level, INSTALL_TABLES)?,
        });
    }
    Ok(Encoded {
        encoding: Encoding::ZstdRef,
        payload: prefix_encode(new, prefix, level, Some(INSTALL_TABLES))?,
    })
}

/// zstd without a reference, as Ferry encodes deltas: from [`MATCH_TABLE_CAP_FROM`] on,
/// inputs large enough that zstd would size its match tables past 2^[`MATCH_TABLE_LOG`]
/// entries get that many (level 19 on a 4 MiB chunk would take 2^22 for each table, 32 MiB
/// per encode, times the encode workers).
pub(crate) fn zstd_alone_bounded(new: &[u8], level: i32) -> io::Result<Vec<u8>> {
    zstd_alone(new, level, DELTA_TABLES)
}

/// zstd without a reference, its match tables capped at `tables` from
/// [`MATCH_TABLE_CAP_FROM`] on (zstd shrinks them further for small inputs).
fn zstd_alone(new: &[u8], level: i32, tables: Tables) -> io::Result<Vec<u8>> {
    use zstd::stream::raw::CParameter;
    let mut compressor = zstd::bulk::Compressor::new(level)?;
    if level >= MATCH_TABLE_CAP_FROM && new.len() > 1 << (tables.hash_log.min(tables.chain_log) - 1)
    {
        compressor.set_parameter(CParameter::HashLog(tables.hash_log))?;
        compressor.set_parameter(CParameter::ChainLog(tables.chain_log))?;
    }
    compressor.compress(new)
}

/// `tables` caps zstd's match tables from [`MATCH_TABLE_CAP_FROM`] on (`None`: zstd's own).
fn prefix_encode(
    new: &[u8],
    prefix: &[u8],
    level: i32,
    tables: Option<Tables>,
) -> io::Result<Vec<u8>> {
    use zstd::zstd_safe::{CCtx, CParameter, compress_bound};
    let zstd = |code: usize| io::Error::other(zstd::zstd_safe::get_error_name(code));
    let span = (prefix.len() + new.len()).max(1 << 10) as u64;
    let window_log = (64 - (span - 1).leading_zeros()).clamp(10, 30);
    let mut cctx =
        CCtx::try_create().ok_or_else(|| io::Error::other("cannot allocate a zstd context"))?;
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .map_err(zstd)?;
    cctx.set_parameter(CParameter::WindowLog(window_log))
        .map_err(zstd)?;
    // Above the fast levels the match tables grow with the window: at level 12, 44 MiB per
    // encode for an 8 MiB window, times the encode workers. Capped at 2^20 entries they took
    // 9 MiB and a quarter of the time, for under 0.1 % more bytes on the native pairs.
    if let Some(tables) = tables.filter(|_| level >= MATCH_TABLE_CAP_FROM) {
        cctx.set_parameter(CParameter::HashLog(tables.hash_log))
            .map_err(zstd)?;
        cctx.set_parameter(CParameter::ChainLog(tables.chain_log))
            .map_err(zstd)?;
    }
    // Fast levels index only part of a large prefix; long-distance matching finds the chunk's
    // old bytes anywhere in the window, at every level (the screen runs at level 3).
    if prefix.len() > 1 << 20 {
        cctx.set_parameter(CParameter::EnableLongDistanceMatching(true))
            .map_err(zstd)?;
    }
    cctx.ref_prefix(prefix).map_err(zstd)?;
    // One shot: zstd reads `new` where it is, where a stream would copy it into an input
    // buffer as large as the window (16 MiB for an 8 MiB prefix and a 4 MiB chunk).
    let mut out = Vec::with_capacity(compress_bound(new.len()));
    cctx.compress2(&mut out, new).map_err(zstd)?;
    Ok(out)
}

/// Decompresses into at most `declared` bytes, in one call into `buffer`'s allocation (grown
/// to `declared`): zstd writes each block straight into place and copies matches from there
/// (and from `prefix`), with no window buffer of its own. A streaming decoder holds one as
/// large as the frame's window (up to 16 MiB for a chunk after an 8 MiB prefix) and copies
/// every byte through it. A frame that would write past `declared` is [`DeltaError::TooLong`]
/// (zstd stops at the buffer's capacity, which may be a larger chunk's); a match reaching
/// before `prefix` is refused as corrupt.
fn zstd_bounded(
    encoding: Encoding,
    payload: &[u8],
    prefix: Option<&[u8]>,
    declared: usize,
    buffer: Vec<u8>,
) -> Result<Vec<u8>, DeltaError> {
    use zstd::zstd_safe::{DCtx, get_error_name, zstd_sys::ZSTD_ErrorCode};
    let corrupt = |reason: &str| DeltaError::Corrupt {
        encoding,
        reason: reason.to_owned(),
    };
    // zstd's error results are the negated error codes (`ERROR(name)` in zstd's sources).
    let too_small = 0usize.wrapping_sub(ZSTD_ErrorCode::ZSTD_error_dstSize_tooSmall as usize);
    let mut dctx = DCtx::try_create().ok_or_else(|| corrupt("cannot allocate a zstd context"))?;
    if let Some(prefix) = prefix {
        dctx.ref_prefix(prefix)
            .map_err(|code| corrupt(get_error_name(code)))?;
    }
    let mut out = buffer;
    out.clear();
    out.reserve_exact(declared);
    // zstd writes into the whole capacity, which may be a larger chunk's.
    match dctx.decompress(&mut out, payload) {
        Ok(_) if out.len() > declared => Err(DeltaError::TooLong { encoding, declared }),
        Ok(_) => Ok(out),
        Err(code) if code == too_small => Err(DeltaError::TooLong { encoding, declared }),
        Err(code) => Err(corrupt(get_error_name(code))),
    }
}

/// Applies a zstd-compressed bsdiff patch, checking its control data on the way.
fn bspatch_checked(
    payload: &[u8],
    old: &[u8],
    declared: usize,
    limits: &Limits,
) -> Result<Vec<u8>, DeltaError> {
    let corrupt = |e: io::Error| DeltaError::Corrupt {
        encoding: Encoding::Bsdiff,
        reason: e.to_string(),
    };
    let mut stream = zstd::stream::read::Decoder::with_buffer(payload).map_err(corrupt)?;
    stream
        .window_log_max(limits.window_log())
        .map_err(corrupt)?;
    let mut checked = CheckedPatch::new(stream, old.len(), declared);
    let mut out = Vec::with_capacity(declared);
    let result = bsdiff::patch(old, &mut checked, &mut out);
    if let Some(reason) = checked.rejected {
        return Err(DeltaError::Control(reason));
    }
    result.map_err(corrupt)?;
    Ok(out)
}

/// Passes a bsdiff patch stream through, validating each 24-byte control triple before it is
/// handed on: mix and copy lengths must fit the declared output, the mixed range must lie
/// inside the old window, seeks must land inside it, and there may be no more triples than
/// the output could need (bsdiff does emit seek-only triples, so a triple may produce nothing,
/// but a patch of endless empty triples, which compresses to almost nothing, is cut off).
struct CheckedPatch<R> {
    inner: R,
    old_len: u64,
    declared: u64,
    produced: u64,
    triples: u64,
    old_pos: u64,
    header: [u8; 24],
    header_served: usize,
    data_left: u64,
    rejected: Option<String>,
}

impl<R: Read> CheckedPatch<R> {
    fn new(inner: R, old_len: usize, declared: usize) -> Self {
        Self {
            inner,
            old_len: old_len as u64,
            declared: declared as u64,
            produced: 0,
            triples: 0,
            old_pos: 0,
            header: [0; 24],
            header_served: 24,
            data_left: 0,
            rejected: None,
        }
    }

    fn reject(&mut self, reason: String) -> io::Error {
        let e = io::Error::new(io::ErrorKind::InvalidData, reason.clone());
        self.rejected = Some(reason);
        e
    }

    /// Reads and validates the next triple; `false` at a clean end of the patch.
    fn next_header(&mut self) -> io::Result<bool> {
        let mut filled = 0;
        while filled < 24 {
            let n = self.inner.read(&mut self.header[filled..])?;
            if n == 0 {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(self.reject(format!("truncated control triple ({filled} of 24 bytes)")));
            }
            filled += n;
        }
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&self.header[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        let (mix, copy, seek_raw) = (field(0), field(1), field(2));
        let seek_back = seek_raw & (1 << 63) != 0;
        let seek = seek_raw & !(1 << 63);
        self.triples += 1;
        if self.triples > 2 * self.declared + 16 {
            return Err(self.reject(format!(
                "more control triples ({}) than a {}-byte chunk could need",
                self.triples, self.declared
            )));
        }
        let produced = mix
            .checked_add(copy)
            .and_then(|s| self.produced.checked_add(s));
        match produced {
            Some(p) if p <= self.declared => self.produced = p,
            _ => {
                return Err(self.reject(format!(
                    "triple of {mix}+{copy} bytes runs past the declared {} bytes",
                    self.declared
                )));
            }
        }
        let mixed_end = self.old_pos.checked_add(mix).filter(|e| *e <= self.old_len);
        let Some(mixed_end) = mixed_end else {
            return Err(self.reject(format!(
                "mix of {mix} bytes at {} runs past the {}-byte window",
                self.old_pos, self.old_len
            )));
        };
        let next = if seek_back {
            mixed_end.checked_sub(seek)
        } else {
            mixed_end.checked_add(seek)
        };
        match next.filter(|p| *p <= self.old_len) {
            Some(p) => self.old_pos = p,
            None => {
                return Err(self.reject(format!(
                    "seek of {}{seek} from {mixed_end} leaves the {}-byte window",
                    if seek_back { "-" } else { "+" },
                    self.old_len
                )));
            }
        }
        self.header_served = 0;
        self.data_left = mix + copy;
        Ok(true)
    }
}

impl<R: Read> Read for CheckedPatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.header_served == 24 && self.data_left == 0 && !self.next_header()? {
            return Ok(0);
        }
        if self.header_served < 24 {
            let n = (24 - self.header_served).min(buf.len());
            buf[..n].copy_from_slice(&self.header[self.header_served..self.header_served + n]);
            self.header_served += n;
            return Ok(n);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(self.reject(format!(
                "patch ends {} bytes short of its triple",
                self.data_left
            )));
        }
        self.data_left -= n as u64;
        Ok(n)
    }
}

/// `data` XOR `reference`, where the reference is shorter the rest XORs with zero.
fn xor_with(data: &[u8], reference: &[u8]) -> Vec<u8> {
    data.iter()
        .enumerate()
        .map(|(i, b)| b ^ reference.get(i).copied().unwrap_or(0))
        .collect()
}

/// Per little-endian `width`-byte element: `data − reference` (or `data + reference` when
/// `undo`), wrapping; where the reference is shorter it counts as zero. A tail shorter than
/// one element is XORed, bytewise.
fn element_diff(data: &[u8], reference: &[u8], width: usize, undo: bool) -> Vec<u8> {
    let mut out = xor_with(data, reference);
    let whole = data.len() / width * width;
    for start in (0..whole).step_by(width) {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a[..width].copy_from_slice(&data[start..start + width]);
        for (k, slot) in b[..width].iter_mut().enumerate() {
            *slot = reference.get(start + k).copied().unwrap_or(0);
        }
        let (x, y) = (u64::from_le_bytes(a), u64::from_le_bytes(b));
        let v = if undo {
            x.wrapping_add(y)
        } else {
            x.wrapping_sub(y)
        };
        out[start..start + width].copy_from_slice(&v.to_le_bytes()[..width]);
    }
    out
}

/// Bytewise `data − reference` (or `data + reference` when `undo`), wrapping, with no carry
/// between bytes: a float nudged by a few units in its last place keeps a zero in every
/// higher byte, where a whole-element difference would borrow into them.
fn byte_diff(data: &[u8], reference: &[u8], undo: bool) -> Vec<u8> {
    data.iter()
        .enumerate()
        .map(|(i, b)| {
            let r = reference.get(i).copied().unwrap_or(0);
            if undo {
                b.wrapping_add(r)
            } else {
                b.wrapping_sub(r)
            }
        })
        .collect()
}

/// Splits whole `width`-byte elements into byte planes (all first bytes, then all second
/// bytes, …); a tail shorter than one element follows as is.
fn to_planes(data: &[u8], width: usize) -> Vec<u8> {
    let elements = data.len() / width;
    let mut out = Vec::with_capacity(data.len());
    for plane in 0..width {
        out.extend((0..elements).map(|e| data[e * width + plane]));
    }
    out.extend_from_slice(&data[elements * width..]);
    out
}

/// The inverse of [`to_planes`].
fn from_planes(planes: &[u8], width: usize) -> Vec<u8> {
    let elements = planes.len() / width;
    let mut out = vec![0u8; planes.len()];
    for plane in 0..width {
        for e in 0..elements {
            out[e * width + plane] = planes[plane * elements + e];
        }
    }
    out[elements * width..].copy_from_slice(&planes[elements * width..]);
    out
}

#[cfg(test)]
mod tests;
