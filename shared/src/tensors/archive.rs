//! Tensor files inside a directory artifact's archive ([`crate::archive`]): the members of a
//! tar are walked header by header, and each member that is a safetensors, GGUF or ONNX file
//! lends its tensors, shifted to where the member's bytes lie in the archive and named
//! `MEMBER/TENSOR` (so a tensor meets its twin in the other version's archive). Headers are
//! hostile like any length in a file: sizes are checked against the file, and the walk stops
//! after [`MAX_MEMBERS`].

use super::{Layout, LayoutError, ReadAt, TensorSpan};

/// Most members walked.
const MAX_MEMBERS: usize = 4096;
/// A tar block.
const BLOCK: u64 = 512;
/// The longest GNU long name read.
const MAX_NAME: u64 = 4096;

/// A member's bytes, read through the archive.
struct Member<'a, F: ReadAt + ?Sized> {
    file: &'a F,
    start: u64,
    len: u64,
}

impl<F: ReadAt + ?Sized> ReadAt for Member<'_, F> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.file.read_exact_at(self.start + offset, buf)
    }
}

/// The tensors of the tensor files in a tar archive.
pub(super) fn spans(file: &(impl ReadAt + ?Sized)) -> Result<Vec<TensorSpan>, LayoutError> {
    let not = |why: &str| LayoutError::NotTensors(format!("tar: {why}"));
    let mut header = [0u8; BLOCK as usize];
    file.read_exact_at(0, &mut header)?;
    if &header[257..262] != b"ustar" {
        return Err(not("no ustar magic"));
    }
    let mut spans = Vec::new();
    let mut at = 0u64;
    let mut long_name: Option<String> = None;
    for _ in 0..MAX_MEMBERS {
        if at + BLOCK > file.len() {
            break;
        }
        file.read_exact_at(at, &mut header)?;
        if header.iter().all(|b| *b == 0) {
            break;
        }
        let size = size(&header[124..136]).ok_or_else(|| not("bad size field"))?;
        let data = at + BLOCK;
        if data.checked_add(size).is_none_or(|end| end > file.len()) {
            return Err(not("a member runs past the end"));
        }
        match header[156] {
            b'L' => {
                let mut name = vec![0u8; size.min(MAX_NAME) as usize];
                file.read_exact_at(data, &mut name)?;
                long_name = Some(text(&name));
            }
            b'0' | 0 => {
                let name = long_name.take().unwrap_or_else(|| {
                    let (prefix, name) = (text(&header[345..500]), text(&header[..100]));
                    if prefix.is_empty() {
                        name
                    } else {
                        format!("{prefix}/{name}")
                    }
                });
                let member = Member {
                    file,
                    start: data,
                    len: size,
                };
                if let Some(layout) = Layout::detect_file(&member) {
                    spans.extend(layout.spans.into_iter().map(|s| TensorSpan {
                        name: format!("{name}/{}", s.name),
                        offset: s.offset + data,
                        ..s
                    }));
                }
            }
            _ => long_name = None,
        }
        at = data + size.div_ceil(BLOCK) * BLOCK;
    }
    Ok(spans)
}

/// A NUL-terminated header field as text.
fn text(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// A size field: octal ASCII, or base-256 (GNU) when its first bit is set.
fn size(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        return field[1..]
            .iter()
            .try_fold(0u64, |n, b| n.checked_mul(256)?.checked_add(u64::from(*b)));
    }
    let digits = text(field);
    let digits = digits.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}
