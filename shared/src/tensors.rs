//! Tensor layouts: where a model file keeps its numbers, and how wide each number is.
//!
//! A [`Layout`] lists a file's tensors (name, byte range, element width) as read from a
//! safetensors header, a GGUF header (the `gguf` module), or an ONNX model's initializers and constant
//! tensors (subgraphs included). [`segments`] cuts one chunk along that layout, pairing each
//! tensor piece with the
//! same tensor's bytes in an old version's reference window, which is what the tensor delta
//! ([`crate::delta::Encoding::Tensors`]) needs. Parsing reads through [`ReadAt`], so a caller
//! can walk a multi-gigabyte file on disk without loading it; nothing here does I/O itself.
//! Every length in the file is treated as hostile: counts, nesting and header sizes are
//! capped, and a tensor that leaves the file or overlaps another is dropped.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Random access to a file's bytes.
pub trait ReadAt {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`; fails when the file ends first.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

impl ReadAt for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let bytes = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// One tensor's bytes in a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpan {
    /// The tensor's name (matched across versions).
    pub name: String,
    /// First byte in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Element width in bytes (1, 2, 4 or 8).
    pub width: u8,
}

impl TensorSpan {
    fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// A file's tensors, sorted by offset, never overlapping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// The tensors.
    pub spans: Vec<TensorSpan>,
}

/// Why a file has no layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// Not a format this module reads (or not well formed).
    #[error("not a tensor file: {0}")]
    NotTensors(String),
    /// Reading failed.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
}

/// Largest safetensors header read (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 16 << 20;
/// Most tensors kept from one file.
const MAX_TENSORS: usize = 1 << 20;
/// Deepest ONNX nesting followed (graphs inside node attributes inside graphs …).
const MAX_DEPTH: u32 = 32;
/// Smallest tensor worth a segment of its own; smaller ones travel with their neighbours.
const MIN_TENSOR: u64 = 64;

impl Layout {
    /// The layout of a safetensors, GGUF or ONNX file, or of a directory artifact's archive
    /// holding such files; `None` for anything else.
    pub fn detect(file: &(impl ReadAt + ?Sized)) -> Option<Layout> {
        Self::safetensors(file)
            .or_else(|_| Self::gguf(file))
            .or_else(|_| Self::archive(file))
            .or_else(|_| Self::onnx(file))
            .ok()
            .filter(|l| !l.spans.is_empty())
    }

    /// The layout of one tensor file (safetensors, GGUF or ONNX), not looking into archives:
    /// what a member of an archive may be.
    fn detect_file(file: &(impl ReadAt + ?Sized)) -> Option<Layout> {
        Self::safetensors(file)
            .or_else(|_| Self::gguf(file))
            .or_else(|_| Self::onnx(file))
            .ok()
            .filter(|l| !l.spans.is_empty())
    }

    /// The tensors of the tensor files inside a tar archive (see the `archive` module); an
    /// archive without any is no layout, so other formats are tried.
    pub fn archive(file: &(impl ReadAt + ?Sized)) -> Result<Layout, LayoutError> {
        let layout = Layout::tidy(archive::spans(file)?, file.len());
        if layout.spans.is_empty() {
            return Err(LayoutError::NotTensors("tar: no tensor files in it".into()));
        }
        Ok(layout)
    }

    /// Reads a safetensors header: `u64` little-endian length, then JSON naming each tensor's
    /// dtype and `data_offsets` relative to the end of the header.
    pub fn safetensors(file: &(impl ReadAt + ?Sized)) -> Result<Layout, LayoutError> {
        let not = |why: &str| LayoutError::NotTensors(format!("safetensors: {why}"));
        let mut len = [0u8; 8];
        file.read_exact_at(0, &mut len)?;
        let header_len = u64::from_le_bytes(len);
        if !(2..=MAX_HEADER).contains(&header_len) || header_len + 8 > file.len() {
            return Err(not("header length out of range"));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact_at(8, &mut header)?;
        if header.first() != Some(&b'{') {
            return Err(not("header is not a JSON object"));
        }
        #[derive(Deserialize)]
        struct Entry {
            dtype: String,
            data_offsets: (u64, u64),
        }
        let entries: HashMap<String, serde_json::Value> =
            serde_json::from_slice(&header).map_err(|e| not(&e.to_string()))?;
        let base = 8 + header_len;
        let mut spans = Vec::new();
        for (name, value) in entries {
            if name == "__metadata__" {
                continue;
            }
            let entry: Entry = serde_json::from_value(value).map_err(|e| not(&e.to_string()))?;
            let (start, end) = entry.data_offsets;
            let Some(width) = safetensors_width(&entry.dtype) else {
                continue;
            };
            if end < start {
                return Err(not("tensor ends before it starts"));
            }
            spans.push(TensorSpan {
                name,
                offset: base.saturating_add(start),
                len: end - start,
                width,
            });
        }
        Ok(Layout::tidy(spans, file.len()))
    }

    /// Reads a GGUF header (see the `gguf` module).
    pub fn gguf(file: &(impl ReadAt + ?Sized)) -> Result<Layout, LayoutError> {
        Ok(Layout::tidy(gguf::spans(file)?, file.len()))
    }

    /// Walks an ONNX model (protobuf) for tensors stored as `raw_data`: graph initializers,
    /// constants in node attributes, and those of subgraphs.
    pub fn onnx(file: &(impl ReadAt + ?Sized)) -> Result<Layout, LayoutError> {
        let mut walk = Walk {
            file,
            spans: Vec::new(),
        };
        walk.message(0, file.len(), Message::Model, 0)?;
        Ok(Layout::tidy(walk.spans, file.len()))
    }

    /// Sorts, drops empty, out-of-file and overlapping spans, caps the count, renames repeats.
    fn tidy(mut spans: Vec<TensorSpan>, file_len: u64) -> Layout {
        spans.retain(|s| {
            s.len >= MIN_TENSOR && s.offset.checked_add(s.len).is_some_and(|e| e <= file_len)
        });
        spans.sort_by_key(|s| s.offset);
        let mut kept: Vec<TensorSpan> = Vec::with_capacity(spans.len().min(MAX_TENSORS));
        for span in spans {
            if kept.len() == MAX_TENSORS {
                break;
            }
            if kept.last().is_none_or(|last| last.end() <= span.offset) {
                kept.push(span);
            }
        }
        // Subgraphs may reuse a name (ONNX `If` branches do): the n-th repeat in file order
        // becomes `name#n`, so each tensor meets its own twin in the other version.
        let mut seen: HashMap<String, usize> = HashMap::new();
        for span in &mut kept {
            let n = seen.entry(span.name.clone()).or_default();
            if *n > 0 {
                span.name = format!("{}#{n}", span.name);
            }
            *n += 1;
        }
        Layout { spans: kept }
    }

    /// Each tensor by name.
    fn named(&self) -> HashMap<&str, &TensorSpan> {
        self.spans.iter().map(|s| (s.name.as_str(), s)).collect()
    }
}

fn safetensors_width(dtype: &str) -> Option<u8> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// Element width of an ONNX `TensorProto.DataType`.
fn onnx_width(data_type: u64) -> Option<u8> {
    Some(match data_type {
        2 | 3 | 9 | 17..=20 => 1, // u8, i8, bool, float8 kinds
        4 | 5 | 10 | 16 => 2,     // u16, i16, f16, bf16
        1 | 6 | 12 | 14 => 4,     // f32, i32, u32, complex64 (two f32)
        7 | 11 | 13 | 15 => 8,    // i64, f64, u64, complex128
        _ => return None,
    })
}

/// The ONNX messages the walk descends into.
#[derive(Clone, Copy)]
enum Message {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
}

impl Message {
    /// The message a length-delimited `field` of `self` holds, if the walk follows it.
    fn child(self, field: u64) -> Option<Message> {
        match (self, field) {
            (Message::Model, 7) => Some(Message::Graph),
            (Message::Graph, 1) => Some(Message::Node),
            (Message::Graph, 5) => Some(Message::Tensor),
            (Message::Node, 5) => Some(Message::Attribute),
            (Message::Attribute, 5 | 11) => Some(Message::Tensor),
            (Message::Attribute, 6 | 10) => Some(Message::Graph),
            _ => None,
        }
    }
}

struct Walk<'a, F: ReadAt + ?Sized> {
    file: &'a F,
    spans: Vec<TensorSpan>,
}

impl<F: ReadAt + ?Sized> Walk<'_, F> {
    fn message(
        &mut self,
        start: u64,
        end: u64,
        kind: Message,
        depth: u32,
    ) -> Result<(), LayoutError> {
        let not = |why: String| LayoutError::NotTensors(format!("onnx: {why}"));
        if depth > MAX_DEPTH {
            return Err(not("nested too deep".into()));
        }
        let (mut data_type, mut name, mut raw) = (None, String::new(), None);
        let mut pos = start;
        while pos < end {
            let key = self.varint(&mut pos, end)?;
            let (field, wire) = (key >> 3, key & 7);
            if field == 0 {
                return Err(not(format!("field 0 at byte {pos}")));
            }
            match wire {
                0 => {
                    let value = self.varint(&mut pos, end)?;
                    if matches!(kind, Message::Tensor) && field == 2 {
                        data_type = Some(value);
                    }
                }
                1 => pos = skip(pos, 8, end)?,
                5 => pos = skip(pos, 4, end)?,
                2 => {
                    let len = self.varint(&mut pos, end)?;
                    let body = pos;
                    pos = skip(pos, len, end)?;
                    match (kind, field) {
                        (Message::Tensor, 8) => name = self.string(body, len)?,
                        (Message::Tensor, 9) => raw = Some((body, len)),
                        _ => {
                            if let Some(child) = kind.child(field) {
                                self.message(body, pos, child, depth + 1)?;
                            }
                        }
                    }
                }
                other => return Err(not(format!("wire type {other} at byte {pos}"))),
            }
        }
        if let (Some((offset, len)), Some(width)) = (raw, data_type.and_then(onnx_width))
            && self.spans.len() < MAX_TENSORS
        {
            self.spans.push(TensorSpan {
                name,
                offset,
                len,
                width,
            });
        }
        Ok(())
    }

    fn varint(&self, pos: &mut u64, end: u64) -> Result<u64, LayoutError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            if *pos >= end {
                return Err(LayoutError::NotTensors("onnx: truncated varint".into()));
            }
            let mut byte = [0u8];
            self.file.read_exact_at(*pos, &mut byte)?;
            *pos += 1;
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(LayoutError::NotTensors("onnx: varint over 64 bits".into()))
    }

    fn string(&self, at: u64, len: u64) -> Result<String, LayoutError> {
        let mut bytes = vec![0u8; len.min(1024) as usize];
        self.file.read_exact_at(at, &mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

fn skip(pos: u64, len: u64, end: u64) -> Result<u64, LayoutError> {
    pos.checked_add(len).filter(|p| *p <= end).ok_or_else(|| {
        LayoutError::NotTensors(format!(
            "onnx: field of {len} bytes at {pos} runs past its message"
        ))
    })
}

/// How a segment's bytes relate to the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SegmentOp {
    /// Sent alone (split into planes when wider than a byte).
    Alone,
    /// XOR with the reference.
    Xor,
    /// Bytewise difference from the reference (no carries between bytes).
    Sub,
}

/// A piece of a chunk with its element width and, when the old version has the same tensor,
/// where that tensor's bytes sit in the reference window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Length in bytes.
    pub len: u32,
    /// Element width (1 for bytes that are not tensor data).
    pub width: u8,
    /// Offset of the same bytes of the old version in the reference window.
    pub reference: Option<u32>,
}

/// Cuts the chunk at `[chunk_offset, chunk_offset + chunk_len)` of a file laid out as `new`
/// into segments; `old` is the layout of the version whose bytes
/// `[window_offset, window_offset + window_len)` the device holds. A tensor of `new` finds
/// its reference in the old tensor of the same name, width and length, when that lies in the
/// window. A piece of a tensor that starts mid-element gets its partial element as a byte
/// segment, so planes always hold whole elements. Segments cover the chunk exactly.
pub fn segments(
    new: &Layout,
    chunk_offset: u64,
    chunk_len: u32,
    old: Option<(&Layout, u64, u64)>,
) -> Vec<Segment> {
    let old_named = old.map(|(layout, _, _)| layout.named()).unwrap_or_default();

    let chunk_end = chunk_offset + u64::from(chunk_len);
    let mut out: Vec<Segment> = Vec::new();
    let push = |out: &mut Vec<Segment>, len: u64, width: u8, reference: Option<u32>| {
        if len == 0 {
            return;
        }
        // Adjacent plain bytes merge; everything else keeps its own segment.
        if let Some(last) = out.last_mut()
            && width == 1
            && reference.is_none()
            && last.width == 1
            && last.reference.is_none()
        {
            last.len += len as u32;
            return;
        }
        out.push(Segment {
            len: len as u32,
            width,
            reference,
        });
    };
    let mut pos = chunk_offset;
    let first = new.spans.partition_point(|s| s.end() <= chunk_offset);
    for span in new.spans[first..]
        .iter()
        .take_while(|s| s.offset < chunk_end)
    {
        let start = span.offset.max(chunk_offset);
        let end = span.end().min(chunk_end);
        push(&mut out, start - pos, 1, None);
        let width = u64::from(span.width);
        let head = (width - (start - span.offset) % width) % width;
        let head = head.min(end - start);
        push(&mut out, head, 1, None);
        let body = start + head;
        let reference = old.and_then(|(_, window_offset, window_len)| {
            let twin = old_named.get(span.name.as_str())?;
            if twin.len != span.len || twin.width != span.width {
                return None;
            }
            let in_old = twin.offset + (body - span.offset);
            let rel = in_old.checked_sub(window_offset)?;
            (rel + (end - body) <= window_len).then_some(u32::try_from(rel).ok()?)
        });
        push(&mut out, end - body, span.width, reference);
        pos = end;
    }
    push(&mut out, chunk_end - pos, 1, None);
    out
}

mod archive;
mod gguf;
#[cfg(test)]
mod tests;
