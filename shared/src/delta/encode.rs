//! A chunk in one named encoding ([`encode`]): what each encoding hands to zstd, prepared once
//! so that the screen and the full-level encode share it.

use std::io;

use super::compress::{zstd_alone_bounded, zstd_with_prefix_bounded};
use super::covers;
use super::format::{DeltaError, Encoding, check_width};
use super::tensor::{element_diff, tensors_body, to_planes, xor_with};
use crate::tensors::{Segment, SegmentOp};

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
pub(super) const PREFIX_LEVEL_CAP: i32 = 12;

/// What an encoding hands to zstd: computed once, compressible at several levels.
pub(super) enum Prepared<'a> {
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
    pub(super) fn compress(&self, encoding: Encoding, level: i32) -> Result<Vec<u8>, DeltaError> {
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

pub(super) fn prepare<'a>(
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
