//! The numeric deltas: a model chunk cut along its tensor layout, each piece XORed or
//! subtracted from its old twin (or alone when retrained) and split into byte planes
//! ([`Encoding::Tensors`]); without a layout, the same at the chunk's own offset and a guessed
//! element width ([`Encoding::XorPlanes`], [`Encoding::SubPlanes`]); and their inverses.

use serde::{Deserialize, Serialize};

use super::format::check_width;
use super::format::{DeltaError, Encoding};
use crate::tensors::{Segment, SegmentOp};

/// One row of a tensor delta's segment table.
#[derive(Serialize, Deserialize)]
pub(super) struct TableRow {
    pub(super) len: u32,
    pub(super) width: u8,
    pub(super) op: SegmentOp,
    pub(super) reference: u32,
}

/// Largest segment table a decoder accepts (bytes, before the planes).
pub(super) const MAX_TABLE: usize = 1 << 20;

/// The body of a tensor delta: the segment table, then the segments' bytes, each combined
/// with its old bytes by its op, as byte planes. Planes are laid out plane-major across
/// segments (every segment's first plane, then every second plane, …), so like bytes of all
/// tensors sit together for zstd; whatever does not fill a whole element follows last.
pub(super) fn tensors_body(
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
pub(super) fn combine(data: &[u8], old: &[u8], op: SegmentOp, undo: bool) -> Vec<u8> {
    match op {
        SegmentOp::Alone => data.to_vec(),
        SegmentOp::Xor => xor_with(data, old),
        SegmentOp::Sub => byte_diff(data, old, undo),
    }
}

/// For each segment with a reference, the op whose planes compress smallest at a fast level:
/// XOR or difference for a tensor that moved a little, alone for one that was retrained.
pub(super) fn choose_ops(new: &[u8], reference: &[u8], segments: &[Segment]) -> Vec<SegmentOp> {
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
pub(super) fn reference_slice(reference: &[u8], at: u32, len: usize) -> Option<&[u8]> {
    let at = at as usize;
    reference.get(at..at.checked_add(len)?)
}

/// Rebuilds a chunk of `declared` bytes from a decompressed tensor delta, checking the
/// table: widths, segment lengths summing to the chunk, references inside the window.
pub(super) fn tensors_restore(
    body: &[u8],
    reference: &[u8],
    declared: usize,
) -> Result<Vec<u8>, DeltaError> {
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

/// `data` XOR `reference`, where the reference is shorter the rest XORs with zero.
pub(super) fn xor_with(data: &[u8], reference: &[u8]) -> Vec<u8> {
    data.iter()
        .enumerate()
        .map(|(i, b)| b ^ reference.get(i).copied().unwrap_or(0))
        .collect()
}

/// Per little-endian `width`-byte element: `data − reference` (or `data + reference` when
/// `undo`), wrapping; where the reference is shorter it counts as zero. A tail shorter than
/// one element is XORed, bytewise.
pub(super) fn element_diff(data: &[u8], reference: &[u8], width: usize, undo: bool) -> Vec<u8> {
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
pub(super) fn byte_diff(data: &[u8], reference: &[u8], undo: bool) -> Vec<u8> {
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
pub(super) fn to_planes(data: &[u8], width: usize) -> Vec<u8> {
    let elements = data.len() / width;
    let mut out = Vec::with_capacity(data.len());
    for plane in 0..width {
        out.extend((0..elements).map(|e| data[e * width + plane]));
    }
    out.extend_from_slice(&data[elements * width..]);
    out
}

/// The inverse of [`to_planes`].
pub(super) fn from_planes(planes: &[u8], width: usize) -> Vec<u8> {
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
