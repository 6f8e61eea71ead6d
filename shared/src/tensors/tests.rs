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
