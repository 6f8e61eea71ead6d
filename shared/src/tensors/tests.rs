use super::*;

fn safetensors_file(tensors: &[(&str, &str, Vec<u8>)]) -> Vec<u8> {
    let tensors: Vec<(&str, &str, &[u8])> = tensors
        .iter()
        .map(|(n, d, b)| (*n, *d, b.as_slice()))
        .collect();
    crate::testutil::safetensors(&[("format", "pt")], &tensors)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited protobuf field.
fn field(number: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3 | 2, &mut out);
    varint(body.len() as u64, &mut out);
    out.extend(body);
    out
}

/// A varint protobuf field.
fn number(number: u64, value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3, &mut out);
    varint(value, &mut out);
    out
}

/// An ONNX `TensorProto` with raw data.
fn tensor(name: &str, data_type: u64, raw: &[u8]) -> Vec<u8> {
    [
        number(1, raw.len() as u64),
        number(2, data_type),
        field(8, name.as_bytes()),
        field(9, raw),
    ]
    .concat()
}

fn bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn safetensors_headers_give_every_tensor_its_range_and_width() {
    let file = safetensors_file(&[
        ("a", "F32", bytes(1, 400)),
        ("b", "BF16", bytes(2, 200)),
        ("c", "UNKNOWN_DTYPE", bytes(3, 100)),
        ("d", "I8", bytes(4, 100)),
    ]);
    let layout = Layout::detect(file.as_slice()).expect("a layout");
    let header_end = file.len() as u64 - 800;
    let got: Vec<(&str, u64, u64, u8)> = layout
        .spans
        .iter()
        .map(|s| (s.name.as_str(), s.offset, s.len, s.width))
        .collect();
    assert_eq!(
        got,
        vec![
            ("a", header_end, 400, 4),
            ("b", header_end + 400, 200, 2),
            ("d", header_end + 700, 100, 1),
        ]
    );
}

#[test]
fn onnx_initializers_constants_and_subgraphs_are_found() {
    let weights = bytes(5, 1000);
    let constant = bytes(6, 512);
    let inner = bytes(7, 256);
    let subgraph = field(5, &tensor("inner.w", 10, &inner));
    let node = [
        field(1, b"x"),
        field(
            5,
            &[field(1, b"value"), field(5, &tensor("const", 7, &constant))].concat(),
        ),
        field(5, &[field(1, b"then_branch"), field(6, &subgraph)].concat()),
    ]
    .concat();
    let graph = [field(1, &node), field(5, &tensor("weights", 1, &weights))].concat();
    let model = [number(1, 8), field(2, b"pytorch"), field(7, &graph)].concat();
    let layout = Layout::detect(model.as_slice()).expect("a layout");
    let find = |raw: &[u8]| model.windows(raw.len()).position(|w| w == raw).unwrap() as u64;
    let mut expected = vec![
        ("weights", find(&weights), 1000, 4),
        ("const", find(&constant), 512, 8),
        ("inner.w", find(&inner), 256, 2),
    ];
    expected.sort_by_key(|e| e.1);
    let got: Vec<(&str, u64, u64, u8)> = layout
        .spans
        .iter()
        .map(|s| (s.name.as_str(), s.offset, s.len, s.width))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn other_files_and_hostile_headers_have_no_layout() {
    let elf = [b"\x7fELF\x02\x01\x01".as_slice(), &bytes(9, 5000)].concat();
    assert_eq!(Layout::detect(elf.as_slice()), None);
    // A header length far past the file, and one that claims the whole address space.
    for len in [1_000_000u64, u64::MAX] {
        let mut file = len.to_le_bytes().to_vec();
        file.extend(b"{\"a\":{}}");
        assert!(Layout::safetensors(file.as_slice()).is_err());
    }
    // A tensor whose offsets leave the file is dropped, not trusted.
    let mut file = safetensors_file(&[("a", "F32", bytes(1, 400))]);
    file.truncate(file.len() - 1);
    assert_eq!(Layout::detect(file.as_slice()), None);
    // Protobuf whose field length runs past its message, and endless nesting.
    let truncated = [7u8 << 3 | 2, 100, 1, 2, 3];
    assert!(Layout::onnx(truncated.as_slice()).is_err());
    let mut nested = field(5, &tensor("t", 1, &bytes(1, 100)));
    for _ in 0..100 {
        nested = field(6, &field(1, &field(5, &nested)));
    }
    let model = field(7, &field(1, &field(5, &nested)));
    assert!(Layout::onnx(model.as_slice()).is_err());
}

fn span(name: &str, offset: u64, len: u64, width: u8) -> TensorSpan {
    TensorSpan {
        name: name.into(),
        offset,
        len,
        width,
    }
}

#[test]
fn a_chunk_is_cut_along_tensors_with_whole_elements_and_matched_references() {
    let new = Layout {
        spans: vec![span("a", 100, 1000, 4), span("b", 1100, 2000, 2)],
    };
    // In the old version `a` sits 8 bytes later, `b` is gone.
    let old = Layout {
        spans: vec![span("a", 108, 1000, 4), span("c", 1108, 2000, 2)],
    };
    // The chunk starts 2 bytes into an element of `a` and ends inside `b`.
    let segments = segments(&new, 102, 1500, Some((&old, 50, 4000)));
    assert_eq!(
        segments,
        vec![
            Segment {
                len: 2,
                width: 1,
                reference: None
            },
            Segment {
                len: 996,
                width: 4,
                reference: Some(108 + 4 - 50)
            },
            Segment {
                len: 502,
                width: 2,
                reference: None
            },
        ]
    );
    assert_eq!(segments.iter().map(|s| s.len).sum::<u32>(), 1500);
    // A window that ends before the old tensor does: no reference.
    let short = super::segments(&new, 102, 1500, Some((&old, 50, 500)));
    assert_eq!(short[1].reference, None);
    // Bytes between tensors are plain.
    let gap = super::segments(&new, 0, 200, None);
    assert_eq!(
        gap,
        vec![
            Segment {
                len: 100,
                width: 1,
                reference: None
            },
            Segment {
                len: 100,
                width: 4,
                reference: None
            },
        ]
    );
}

/// A GGUF v3 file: `kvs` (already encoded: key, type, value) then `tensors` (name, ggml type,
/// data), the data section aligned to `alignment`.
fn gguf_file(kvs: &[Vec<u8>], tensors: &[(&str, u32, Vec<u8>)], alignment: u64) -> Vec<u8> {
    let string = |s: &str, out: &mut Vec<u8>| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    let mut file = b"GGUF".to_vec();
    file.extend(3u32.to_le_bytes());
    file.extend((tensors.len() as u64).to_le_bytes());
    file.extend((kvs.len() as u64).to_le_bytes());
    for kv in kvs {
        file.extend(kv);
    }
    let mut offset = 0u64;
    for (name, kind, data) in tensors {
        string(name, &mut file);
        file.extend(1u32.to_le_bytes());
        file.extend((data.len() as u64).to_le_bytes());
        file.extend(kind.to_le_bytes());
        file.extend(offset.to_le_bytes());
        offset = (offset + data.len() as u64).next_multiple_of(alignment);
    }
    for (_, _, data) in tensors {
        file.resize((file.len() as u64).next_multiple_of(alignment) as usize, 0);
        file.extend(data);
    }
    file
}

fn gguf_kv(key: &str, kind: u32, value: &[u8]) -> Vec<u8> {
    let mut kv = (key.len() as u64).to_le_bytes().to_vec();
    kv.extend(key.as_bytes());
    kv.extend(kind.to_le_bytes());
    kv.extend(value);
    kv
}

#[test]
fn gguf_headers_give_every_tensor_its_range_and_width() {
    // An array of strings (a tokenizer's vocabulary) and the alignment among the key-values.
    let mut vocab = 8u32.to_le_bytes().to_vec();
    vocab.extend(3u64.to_le_bytes());
    for word in ["a", "bc", "def"] {
        vocab.extend((word.len() as u64).to_le_bytes());
        vocab.extend(word.as_bytes());
    }
    let kvs = [
        gguf_kv(
            "general.name",
            8,
            &[5, 0, 0, 0, 0, 0, 0, 0, b'm', b'o', b'd', b'e', b'l'],
        ),
        gguf_kv("tokenizer.ggml.tokens", 9, &vocab),
        gguf_kv("general.alignment", 4, &64u32.to_le_bytes()),
    ];
    let tensors = [
        ("blk.0.attn_q.weight", 8u32, bytes(1, 34 * 40)), // Q8_0 blocks
        ("output_norm.weight", 0, bytes(2, 4 * 100)),     // f32
        ("token_embd.weight", 1, bytes(3, 2 * 300)),      // f16
    ];
    let file = gguf_file(&kvs, &tensors, 64);
    let layout = Layout::detect(file.as_slice()).expect("a GGUF layout");
    let find = |data: &[u8]| {
        file.windows(data.len())
            .position(|w| w == data)
            .expect("tensor bytes in the file") as u64
    };
    let got: Vec<(&str, u64, u8)> = layout
        .spans
        .iter()
        .map(|s| (s.name.as_str(), s.offset, s.width))
        .collect();
    assert_eq!(
        got,
        vec![
            ("blk.0.attn_q.weight", find(&tensors[0].2), 1),
            ("output_norm.weight", find(&tensors[1].2), 4),
            ("token_embd.weight", find(&tensors[2].2), 2),
        ]
    );
    assert!(got.iter().all(|(_, offset, _)| offset % 64 == 0));
    // Each tensor runs to the next (padding included); the last to the end of the file.
    assert_eq!(
        layout.spans[2].offset + layout.spans[2].len,
        file.len() as u64
    );
    assert!(layout.spans[0].len >= 34 * 40);
}

#[test]
fn hostile_gguf_headers_have_no_layout() {
    let good = gguf_file(&[], &[("w", 0, bytes(1, 400))], 32);
    assert!(Layout::gguf(good.as_slice()).is_ok());
    let with = |at: usize, value: &[u8]| {
        let mut file = good.clone();
        file[at..at + value.len()].copy_from_slice(value);
        file
    };
    // Counts far past what the file could hold, and a version nobody wrote.
    assert!(Layout::gguf(with(8, &u64::MAX.to_le_bytes()).as_slice()).is_err());
    assert!(Layout::gguf(with(16, &(1u64 << 40).to_le_bytes()).as_slice()).is_err());
    assert!(Layout::gguf(with(4, &9u32.to_le_bytes()).as_slice()).is_err());
    // A tensor name longer than the file, and a header cut short.
    assert!(Layout::gguf(with(24, &u64::MAX.to_le_bytes()).as_slice()).is_err());
    assert!(Layout::gguf(&good[..30]).is_err());
    // An array claiming more strings than the file has bytes, and arrays nested without end.
    let mut huge = 8u32.to_le_bytes().to_vec();
    huge.extend(u64::MAX.to_le_bytes());
    let file = gguf_file(&[gguf_kv("k", 9, &huge)], &[("w", 0, bytes(1, 400))], 32);
    assert!(Layout::gguf(file.as_slice()).is_err());
    let mut nested = Vec::new();
    for _ in 0..20 {
        nested.extend(9u32.to_le_bytes());
        nested.extend(1u64.to_le_bytes());
    }
    nested.extend(4u32.to_le_bytes());
    nested.extend(0u64.to_le_bytes());
    let file = gguf_file(&[gguf_kv("k", 9, &nested)], &[("w", 0, bytes(1, 400))], 32);
    assert!(Layout::gguf(file.as_slice()).is_err());
    // An alignment that is not a power of two.
    let file = gguf_file(
        &[gguf_kv("general.alignment", 4, &3u32.to_le_bytes())],
        &[("w", 0, bytes(1, 400))],
        32,
    );
    assert!(Layout::gguf(file.as_slice()).is_err());
    // A tensor offset past the end of the file is dropped, not trusted.
    let mut file = gguf_file(&[], &[("a", 0, bytes(1, 400)), ("b", 0, bytes(2, 400))], 32);
    let b_offset = file
        .windows(1 + 8 + 4 + 8 + 4)
        .position(|w| w.starts_with(b"b"))
        .expect("tensor b's info");
    let offset_at = b_offset + 1 + 4 + 8 + 4;
    file[offset_at..offset_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let layout = Layout::gguf(file.as_slice()).expect("a layout without b");
    assert_eq!(
        layout
            .spans
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        vec!["a"]
    );
}

/// A directory holding `files`, packed as `ferryctl publish DIR` packs it.
fn packed(files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let mut out = Vec::new();
    crate::archive::pack(dir.path(), &mut out).unwrap();
    out
}

#[test]
fn the_tensor_files_inside_a_directory_archive_lend_their_tensors_named_by_member() {
    let weights = safetensors_file(&[
        ("encoder.weight", "F32", vec![1u8; 4096]),
        ("decoder.weight", "F16", vec![2u8; 2048]),
    ]);
    let deep = format!("{}/weights.safetensors", "d".repeat(120));
    let archive = packed(&[
        ("MLmodel", b"flavors: {}\n"),
        ("data/model.safetensors", &weights),
        (&deep, &weights),
        ("requirements.txt", b"torch==2.5.1\n"),
    ]);
    let layout = Layout::detect(archive.as_slice()).expect("a layout");
    let names: Vec<&str> = layout.spans.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names.contains(&"data/model.safetensors/encoder.weight"),
        "{names:?}"
    );
    assert!(
        names.contains(&format!("{deep}/decoder.weight").as_str()),
        "long names: {names:?}"
    );
    assert_eq!(layout.spans.len(), 4);
    for span in &layout.spans {
        let bytes = &archive[span.offset as usize..(span.offset + span.len) as usize];
        let want = if span.name.ends_with("encoder.weight") {
            1
        } else {
            2
        };
        assert!(
            bytes.iter().all(|b| *b == want),
            "{} points at its bytes",
            span.name
        );
        assert_eq!(span.width, if want == 1 { 4 } else { 2 });
    }
    // An archive of plain files has no layout.
    assert_eq!(
        Layout::detect(packed(&[("a.txt", b"hello")]).as_slice()),
        None
    );
}

#[test]
fn a_hostile_archive_header_is_refused_without_reading_past_the_file() {
    let weights = safetensors_file(&[("w", "F32", vec![1u8; 4096])]);
    let mut archive = packed(&[("model.safetensors", &weights)]);
    // A size field far past the end.
    archive[124..136].copy_from_slice(b"77777777777\0");
    assert!(Layout::archive(archive.as_slice()).is_err());
    archive[124..136].copy_from_slice(&[
        0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    assert!(Layout::archive(archive.as_slice()).is_err());
    // Cut short in the middle of the member.
    let whole = packed(&[("model.safetensors", &weights)]);
    assert!(Layout::archive(&whole[..1500]).is_err());
}
