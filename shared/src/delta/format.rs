//! What travels: the encodings a chunk can take on the wire ([`Encoding`]), an encoded chunk
//! ([`Encoded`]), the limits a decoder holds every payload to ([`Limits`]), and what goes
//! wrong decoding one ([`DeltaError`]).

use serde::{Deserialize, Serialize};

/// How a chunk is encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// The bytes as they are.
    Raw,
    /// zstd on its own, the way chunks are stored.
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
    /// for native code. See the `covers` module.
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
    /// The encoding of `payload`.
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
    pub(super) fn window_log(&self) -> u32 {
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
        /// The length the chunk index declares, in bytes.
        declared: usize,
        /// The largest chunk this decoder accepts, in bytes.
        limit: usize,
    },
    /// The reference window is over the limit.
    #[error("reference window of {len} bytes exceeds the limit of {limit} bytes")]
    ReferenceTooLarge {
        /// The payload's length, in bytes.
        len: usize,
        /// The largest payload this decoder accepts, in bytes.
        limit: usize,
    },
    /// The encoding needs a reference and none was given.
    #[error("{0:?} needs a reference window")]
    MissingReference(Encoding),
    /// The data would decode past the declared length.
    #[error("{encoding:?} data decodes to more than the declared {declared} bytes")]
    TooLong {
        /// The encoding that needed it.
        encoding: Encoding,
        /// The chunk's declared length, in bytes.
        declared: usize,
    },
    /// The data decodes to fewer bytes than declared.
    #[error("{encoding:?} data decodes to {actual} bytes, not the declared {declared}")]
    WrongLength {
        /// The encoding that produced it.
        encoding: Encoding,
        /// The bytes the payload decoded to.
        actual: usize,
        /// The chunk's declared length, in bytes.
        declared: usize,
    },
    /// bsdiff control data that points outside the window or the chunk, or makes no progress.
    #[error("bsdiff control data rejected: {0}")]
    Control(String),
    /// Undecodable data.
    #[error("corrupt {encoding:?} data: {reason}")]
    Corrupt {
        /// The encoding this build does not know how to decode.
        encoding: Encoding,
        /// Decoder message.
        reason: String,
    },
    /// An element width other than 1, 2, 4 or 8.
    #[error("unsupported element width {0}")]
    BadWidth(u8),
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

/// Refuses an element width the plane encodings do not have (1, 2, 4 or 8 bytes).
pub(super) fn check_width(width: u8) -> Result<(), DeltaError> {
    if matches!(width, 1 | 2 | 4 | 8) {
        Ok(())
    } else {
        Err(DeltaError::BadWidth(width))
    }
}
