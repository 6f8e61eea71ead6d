//! A payload back into the chunk's bytes ([`decode`], [`decode_in_window`]), every byte treated
//! as hostile: never more than the declared length, the window capped, control data checked
//! before it is acted on.

use super::bsdiff::bspatch_checked;
use super::compress::zstd_bounded;
use super::covers;
use super::encode::reference_in_window;
use super::format::{DeltaError, Encoding, Limits, check_width};
use super::tensor::{MAX_TABLE, element_diff, from_planes, tensors_restore, xor_with};

/// Decodes a chunk that [`super::encode_best_in_window`] encoded against `window` with the chunk's
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
pub(super) fn decode_reusing(
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
