//! GGUF (the file llama.cpp and other edge LLM runtimes load): reading where each tensor's
//! bytes are. The header is magic `GGUF`, a `u32` version (2 or 3), `u64` tensor and
//! key-value counts, the key-values (skipped here, arrays of strings included), then per
//! tensor its name, dimensions, `ggml` type and offset from the data section, which starts at
//! the next multiple of `general.alignment` (32 unless the key-values say otherwise).
//!
//! A tensor runs to the next tensor's offset (or to the end of the file, which also bounds an
//! offset past it), so types this
//! reader does not know still get their span. Quantized types (blocks of scales and packed
//! integers) get width 1; plain numbers their own width. Every count and length is hostile:
//! each is checked against what is left of the file before anything is allocated for it.

use super::{LayoutError, MAX_TENSORS, ReadAt, TensorSpan};

/// Bytes read from the file at a time while walking the header.
const PAGE: usize = 64 * 1024;

/// Longest string read in full (tensor names; keys and values are skipped, not read).
const MAX_NAME: u64 = 64 * 1024;

/// Deepest array nesting followed (arrays of arrays).
const MAX_NESTING: u32 = 8;

/// The alignment of the data section when the key-values do not name one.
const DEFAULT_ALIGNMENT: u64 = 32;

fn not(why: &str) -> LayoutError {
    LayoutError::NotTensors(format!("gguf: {why}"))
}

/// The tensors of a GGUF file (before [`super::Layout::tidy`]).
pub(super) fn spans(file: &(impl ReadAt + ?Sized)) -> Result<Vec<TensorSpan>, LayoutError> {
    let mut r = Reader::new(file);
    if r.bytes::<4>()? != *b"GGUF" {
        return Err(not("no GGUF magic"));
    }
    let version = r.u32()?;
    if !(2..=3).contains(&version) {
        return Err(not(&format!("version {version} is not 2 or 3")));
    }
    let tensors = r.u64()?;
    let kvs = r.u64()?;
    // Each tensor info and each key-value takes more than 8 bytes: counts beyond that cannot
    // be true of this file.
    if tensors > r.left() / 8 || kvs > r.left() / 8 || tensors > MAX_TENSORS as u64 {
        return Err(not("counts larger than the file"));
    }
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..kvs {
        let key_len = r.u64()?;
        let is_alignment = key_len == 17 && r.peek_eq(b"general.alignment")?;
        r.skip(key_len)?;
        let kind = r.u32()?;
        if is_alignment && kind == 4 {
            alignment = u64::from(r.u32()?);
            if alignment == 0 || !alignment.is_power_of_two() {
                return Err(not("alignment is not a power of two"));
            }
        } else {
            r.skip_value(kind, 0)?;
        }
    }
    let mut infos = Vec::with_capacity(tensors as usize);
    for _ in 0..tensors {
        let name = r.string()?;
        let dims = r.u32()?;
        if dims > 8 {
            return Err(not("tensor with more than 8 dimensions"));
        }
        r.skip(u64::from(dims) * 8)?;
        let kind = r.u32()?;
        let offset = r.u64()?;
        infos.push((name, kind, offset));
    }
    let data = r.pos.next_multiple_of(alignment);
    let file_len = file.len();
    infos.sort_by_key(|(_, _, offset)| *offset);
    let ends: Vec<u64> = infos
        .iter()
        .skip(1)
        .map(|(_, _, offset)| data.saturating_add(*offset).min(file_len))
        .chain(std::iter::once(file_len))
        .collect();
    Ok(infos
        .into_iter()
        .zip(ends)
        .filter_map(|((name, kind, offset), end)| {
            let offset = data.checked_add(offset)?;
            Some(TensorSpan {
                name,
                offset,
                len: end.checked_sub(offset)?,
                width: width(kind),
            })
        })
        .collect())
}

/// Element width of a `ggml_type`: plain numbers their size, anything block-quantized 1.
fn width(kind: u32) -> u8 {
    match kind {
        0 | 26 => 4,      // f32, i32
        1 | 25 | 30 => 2, // f16, i16, bf16
        27 | 28 => 8,     // i64, f64
        _ => 1,           // i8 and the quantized block types
    }
}

/// A cursor over the file that reads it a page at a time.
struct Reader<'a, F: ReadAt + ?Sized> {
    file: &'a F,
    pos: u64,
    page: Vec<u8>,
    page_at: u64,
}

impl<'a, F: ReadAt + ?Sized> Reader<'a, F> {
    fn new(file: &'a F) -> Self {
        Reader {
            file,
            pos: 0,
            page: Vec::new(),
            page_at: 0,
        }
    }

    fn left(&self) -> u64 {
        self.file.len().saturating_sub(self.pos)
    }

    /// Fills `out` from the cursor, without moving it.
    fn peek(&mut self, out: &mut [u8]) -> Result<(), LayoutError> {
        let want = out.len() as u64;
        if want > self.left() {
            return Err(not("header runs past the end of the file"));
        }
        let in_page =
            self.pos >= self.page_at && self.pos + want <= self.page_at + self.page.len() as u64;
        if !in_page {
            let len = (PAGE as u64).max(want).min(self.left());
            self.page.resize(len as usize, 0);
            self.file.read_exact_at(self.pos, &mut self.page)?;
            self.page_at = self.pos;
        }
        let start = (self.pos - self.page_at) as usize;
        out.copy_from_slice(&self.page[start..start + out.len()]);
        Ok(())
    }

    fn peek_eq(&mut self, expected: &[u8]) -> Result<bool, LayoutError> {
        let mut got = vec![0u8; expected.len()];
        Ok(self.peek(&mut got).is_ok() && got == expected)
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], LayoutError> {
        let mut out = [0u8; N];
        self.peek(&mut out)?;
        self.pos += N as u64;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, LayoutError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }

    fn u64(&mut self) -> Result<u64, LayoutError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }

    fn skip(&mut self, len: u64) -> Result<(), LayoutError> {
        if len > self.left() {
            return Err(not("header runs past the end of the file"));
        }
        self.pos += len;
        Ok(())
    }

    fn string(&mut self) -> Result<String, LayoutError> {
        let len = self.u64()?;
        if len > MAX_NAME {
            return Err(not("tensor name too long"));
        }
        let mut name = vec![0u8; len as usize];
        self.peek(&mut name)?;
        self.pos += len;
        Ok(String::from_utf8_lossy(&name).into_owned())
    }

    /// Skips one key-value's value of `kind` (`gguf_type`).
    fn skip_value(&mut self, kind: u32, nesting: u32) -> Result<(), LayoutError> {
        match kind {
            0 | 1 | 7 => self.skip(1),
            2 | 3 => self.skip(2),
            4..=6 => self.skip(4),
            10..=12 => self.skip(8),
            8 => {
                let len = self.u64()?;
                self.skip(len)
            }
            9 => {
                if nesting >= MAX_NESTING {
                    return Err(not("arrays nested too deep"));
                }
                let element = self.u32()?;
                let count = self.u64()?;
                match fixed_size(element) {
                    Some(size) => self.skip(
                        count
                            .checked_mul(size)
                            .ok_or_else(|| not("array too long"))?,
                    ),
                    None => {
                        // Strings and arrays take at least 8 bytes each.
                        if count > self.left() / 8 {
                            return Err(not("array longer than the file"));
                        }
                        (0..count).try_for_each(|_| self.skip_value(element, nesting + 1))
                    }
                }
            }
            _ => Err(not(&format!("unknown value type {kind}"))),
        }
    }
}

/// The size of a fixed-size `gguf_type`.
fn fixed_size(kind: u32) -> Option<u64> {
    match kind {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}
