//! bsdiff patches, still decoded (caches and older coordinators hold them) but no longer
//! produced, applied with their control triples checked as they stream past, before the
//! bsdiff crate sees them.

use std::io;
use std::io::Read;

use super::format::{DeltaError, Encoding, Limits};

/// Applies a zstd-compressed bsdiff patch, checking its control data on the way.
pub(super) fn bspatch_checked(
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
pub(super) struct CheckedPatch<R> {
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
