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

mod bsdiff;
mod choose;
mod compress;
mod covers;
mod decode;
mod encode;
mod format;
mod kinship;
mod tensor;
pub mod window;

pub use choose::{SuffixSource, encode_best, encode_best_in_window, encode_delta_in_window};
pub use compress::{encode_after_own_prefix, zstd_with_prefix};
pub use covers::{SuffixCache, SuffixIndex};
pub use decode::{decode, decode_in_window, decode_in_window_reusing};
pub use encode::{encode, reference_in_window};
pub use format::{DeltaError, Encoded, Encoding, Limits};
pub use kinship::{Sketch, related_aligned, related_moved};

#[cfg(test)]
mod tests;
