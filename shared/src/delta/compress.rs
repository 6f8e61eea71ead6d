//! zstd as the encodings use it: alone, with a reference window as prefix (match tables capped
//! so that memory follows the window, not the level), after the file's own preceding bytes
//! (first installs), and decompression bounded by the declared length.

use std::io;

use super::format::{DeltaError, Encoded, Encoding};

/// The level from which Ferry's own window-prefixed encodes cap their match tables (below it
/// zstd's own tables are smaller than the cap).
pub(super) const MATCH_TABLE_CAP_FROM: i32 = 6;
/// log2 of the entries of each match table Ferry's window-prefixed encodes allow.
pub(super) const MATCH_TABLE_LOG: u32 = 20;

/// zstd with `prefix` as a reference the frame may copy from (what `zstd --patch-from
/// --long` does), at exactly `level`, with zstd's own table sizes; the window covers both.
/// [`super::decode()`] reads it as [`Encoding::ZstdRef`]. (The benches' anchor; Ferry encodes with
/// bounded tables.)
pub fn zstd_with_prefix(new: &[u8], prefix: &[u8], level: i32) -> io::Result<Vec<u8>> {
    prefix_encode(new, prefix, level, None)
}

/// [`zstd_with_prefix`] with the match tables capped from [`MATCH_TABLE_CAP_FROM`] on.
pub(super) fn zstd_with_prefix_bounded(
    new: &[u8],
    prefix: &[u8],
    level: i32,
) -> io::Result<Vec<u8>> {
    prefix_encode(new, prefix, level, Some(DELTA_TABLES))
}

/// Match-table sizes (log2 of the entries of zstd's hash and chain tables) of an encode.
#[derive(Clone, Copy)]
pub(super) struct Tables {
    hash_log: u32,
    chain_log: u32,
}

/// Deltas: 2^20 entries each, 9 MiB an encode (see [`prefix_encode`]).
pub(super) const DELTA_TABLES: Tables = Tables {
    hash_log: MATCH_TABLE_LOG,
    chain_log: MATCH_TABLE_LOG,
};

/// First installs (see [`encode_after_own_prefix`]): 48 MiB of tables. On a 30 MiB native
/// library with 8 MiB prefixes, 2^20 each sent 2.9 % more than zstd -19 over the whole file,
/// these 0.6 %, and zstd's own level-19 tables (80 MiB) 0.5 %.
pub(super) const INSTALL_TABLES: Tables = Tables {
    hash_log: 22,
    chain_log: 23,
};

/// A chunk of a first install, encoded against the bytes of the same file just before it
/// (see [`super::window::install_window`]) as [`Encoding::ZstdRef`] at `level`, or plain zstd
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
pub(super) fn zstd_alone(new: &[u8], level: i32, tables: Tables) -> io::Result<Vec<u8>> {
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
pub(super) fn prefix_encode(
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
pub(super) fn zstd_bounded(
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
