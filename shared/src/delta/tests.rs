use super::choose::screen;
use super::compress::zstd_with_prefix_bounded;
use super::tensor::{TableRow, from_planes, to_planes};
use super::*;
use crate::tensors::SegmentOp;
use crate::testutil::noise;

/// `old` with a few bytes changed and a few inserted, like a rebuilt artifact.
fn edited(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    for i in (0..new.len()).step_by(9973) {
        new[i] ^= 0x5a;
    }
    new.splice(
        1000..1000,
        b"inserted bytes shift everything after them"
            .iter()
            .copied(),
    );
    new
}

#[test]
fn every_encoding_round_trips() {
    let old = noise(1, 64 * 1024);
    let new = edited(&old);
    for encoding in Encoding::EVERY {
        let payload = encode(encoding, &new, Some(&old), 3).unwrap();
        let back = decode(encoding, &payload, Some(&old), new.len(), &Limits::DEFAULT).unwrap();
        assert_eq!(back, new, "{encoding:?}");
    }
    // Tails shorter than one element, empty chunks, a reference shorter than the chunk.
    for len in [0, 1, 3, 7, 4099] {
        let new = noise(2, len);
        for encoding in Encoding::EVERY {
            let payload = encode(encoding, &new, Some(&old[..10]), 3).unwrap();
            let back = decode(encoding, &payload, Some(&old[..10]), len, &Limits::DEFAULT).unwrap();
            assert_eq!(back, new, "{encoding:?} len {len}");
        }
    }
}

#[test]
fn small_edits_travel_as_a_delta_not_a_copy() {
    let old = noise(3, 256 * 1024);
    let new = edited(&old);
    let best = encode_best(&new, Some(&old), 19);
    assert!(
        matches!(best.encoding, Encoding::ZstdRef | Encoding::Covers),
        "{:?}",
        best.encoding
    );
    assert!(
        best.payload.len() < new.len() / 20,
        "{} bytes for {}",
        best.payload.len(),
        new.len()
    );
    let without = encode_best(&new, None, 19);
    assert!(matches!(without.encoding, Encoding::Raw | Encoding::Zstd));
}

#[test]
fn nudged_weights_travel_best_as_xor_planes() {
    // Every weight of the tensor nudged by up to about 1 % relative, as fine-tuning does to the
    // tensors it touches (untouched tensors are whole unchanged chunks, deduplicated).
    let count = 64 * 1024;
    let noise_bytes = noise(4, count * 2);
    let old: Vec<f32> = (0..count)
        .map(|i| (f32::from(noise_bytes[i]) - 128.0) / 64.0 + 0.001 * i as f32)
        .collect();
    let new: Vec<f32> = old
        .iter()
        .enumerate()
        .map(|(i, w)| w * (1.0 + (f32::from(noise_bytes[count + i]) - 128.0) / 12_800.0))
        .collect();
    let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    let (old, new) = (bytes(&old), bytes(&new));
    let planes = encode(Encoding::XorPlanes { width: 4 }, &new, Some(&old), 19).unwrap();
    let zstd = encode(Encoding::Zstd, &new, None, 19).unwrap();
    let zstd_ref = encode(Encoding::ZstdRef, &new, Some(&old), 19).unwrap();
    assert!(
        planes.len() < zstd.len() && planes.len() < zstd_ref.len(),
        "planes {} zstd {} zstd-ref {}",
        planes.len(),
        zstd.len(),
        zstd_ref.len()
    );
    let best = encode_best(&new, Some(&old), 19).encoding;
    assert!(
        matches!(
            best,
            Encoding::XorPlanes { width: 4 } | Encoding::SubPlanes { width: 4 }
        ),
        "{best:?}"
    );
    let sub = encode(Encoding::SubPlanes { width: 4 }, &new, Some(&old), 19).unwrap();
    assert!(
        sub.len() < zstd_ref.len(),
        "sub {} zstd-ref {}",
        sub.len(),
        zstd_ref.len()
    );
}

#[test]
fn a_zstd_bomb_stops_at_the_declared_length() {
    let bomb = zstd::bulk::compress(&vec![0u8; 8 << 20], 19).unwrap();
    assert!(bomb.len() < 4096);
    for encoding in [Encoding::Zstd, Encoding::XorPlanes { width: 4 }] {
        let err = decode(encoding, &bomb, Some(&[0; 16]), 1000, &Limits::DEFAULT).unwrap_err();
        assert_eq!(
            err,
            DeltaError::TooLong {
                encoding,
                declared: 1000
            }
        );
    }
}

/// A device decodes each chunk into the last one's buffer, which may be far larger than the
/// chunk: zstd writes into the whole capacity, so the declared length is checked after it.
#[test]
fn a_reused_buffer_larger_than_the_chunk_still_bounds_the_decode() {
    // Past the declared length but within the buffer's capacity.
    let bomb = zstd::bulk::compress(&vec![0u8; 64 << 10], 19).unwrap();
    for encoding in [Encoding::Zstd, Encoding::ZstdRef] {
        let window = encoding.needs_reference().then_some((&[0u8; 16][..], 0));
        let buffer = vec![7u8; 4 << 20];
        let err = decode_in_window_reusing(encoding, &bomb, window, 1000, &Limits::DEFAULT, buffer)
            .unwrap_err();
        assert_eq!(
            err,
            DeltaError::TooLong {
                encoding,
                declared: 1000
            }
        );
    }
    // And a good chunk comes out whole, none of the buffer's old bytes with it.
    let chunk = noise(33, 5000);
    let payload = zstd::bulk::compress(&chunk, 3).unwrap();
    let buffer = vec![7u8; 4 << 20];
    let out = decode_in_window_reusing(
        Encoding::Zstd,
        &payload,
        None,
        chunk.len(),
        &Limits::DEFAULT,
        buffer,
    )
    .unwrap();
    assert_eq!(out, chunk);
}

#[test]
fn lengths_and_limits_are_enforced() {
    let small = zstd::bulk::compress(&[1u8; 100], 3).unwrap();
    assert!(matches!(
        decode(Encoding::Zstd, &small, None, 1000, &Limits::DEFAULT),
        Err(DeltaError::WrongLength {
            actual: 100,
            declared: 1000,
            ..
        })
    ));
    assert!(matches!(
        decode(Encoding::Raw, &[0; 11], None, 10, &Limits::DEFAULT),
        Err(DeltaError::TooLong { .. })
    ));
    let tight = Limits {
        max_chunk: 1024,
        max_reference: 2048,
    };
    assert!(matches!(
        decode(Encoding::Raw, &[], None, 1025, &tight),
        Err(DeltaError::ChunkTooLarge { .. })
    ));
    assert!(matches!(
        decode(Encoding::ZstdRef, &small, Some(&[0; 2049]), 100, &tight),
        Err(DeltaError::ReferenceTooLarge { .. })
    ));
    assert_eq!(
        decode(Encoding::Bsdiff, &small, None, 100, &tight),
        Err(DeltaError::MissingReference(Encoding::Bsdiff))
    );
    assert_eq!(
        decode(
            Encoding::XorPlanes { width: 3 },
            &small,
            Some(&[0]),
            100,
            &tight
        ),
        Err(DeltaError::BadWidth(3))
    );
}

/// A zstd-compressed bsdiff patch from raw triples `(mix, copy, seek)` and their data.
fn patch(triples: &[(u64, u64, i64)]) -> Vec<u8> {
    let mut raw = Vec::new();
    for &(mix, copy, seek) in triples {
        raw.extend(mix.to_le_bytes());
        raw.extend(copy.to_le_bytes());
        let sm = if seek < 0 {
            seek.unsigned_abs() | 1 << 63
        } else {
            seek as u64
        };
        raw.extend(sm.to_le_bytes());
        let data = usize::try_from(mix.saturating_add(copy))
            .unwrap_or(0)
            .min(1 << 16);
        raw.extend(std::iter::repeat_n(0u8, data));
    }
    zstd::bulk::compress(&raw, 3).unwrap()
}

#[test]
fn hostile_bsdiff_control_data_is_rejected_before_it_is_applied() {
    let old = noise(5, 1000);
    let limits = Limits::DEFAULT;
    let rejected = |triples: &[(u64, u64, i64)], declared: usize| match decode(
        Encoding::Bsdiff,
        &patch(triples),
        Some(&old),
        declared,
        &limits,
    ) {
        Err(DeltaError::Control(reason)) => reason,
        other => panic!("{triples:?} gave {other:?}"),
    };
    assert!(
        rejected(&[(1001, 0, 0)], 2000).contains("window"),
        "mix past the window"
    );
    assert!(
        rejected(&[(10, 2000, 0)], 100).contains("declared"),
        "output past the declared length"
    );
    assert!(
        rejected(&[(u64::MAX, 1, 0)], 100).contains("declared"),
        "overflowing lengths"
    );
    let endless = vec![(0u64, 0u64, 0i64); 10_000];
    assert!(
        rejected(&endless, 100).contains("more control triples"),
        "endless empty triples"
    );
    // bsdiff itself emits seek-only triples; those are fine.
    let seek_only = decode(
        Encoding::Bsdiff,
        &patch(&[(0, 0, 30), (10, 0, 0)]),
        Some(&old),
        10,
        &limits,
    )
    .unwrap();
    assert_eq!(seek_only, &old[30..40]);
    assert!(
        rejected(&[(10, 0, -11)], 100).contains("seek"),
        "seek before the window"
    );
    assert!(
        rejected(&[(10, 0, 991)], 100).contains("seek"),
        "seek past the window"
    );
    // A well-formed patch of the same shape applies.
    let fine = decode(
        Encoding::Bsdiff,
        &patch(&[(10, 5, 5), (20, 0, 0)]),
        Some(&old),
        35,
        &limits,
    )
    .unwrap();
    assert_eq!(&fine[..10], &old[..10]);
    assert_eq!(
        &fine[15..35],
        &old[15..35],
        "seek is relative to the end of the mix"
    );
    // Truncation inside a triple or its data.
    let mut raw = Vec::new();
    raw.extend(10u64.to_le_bytes());
    raw.extend(0u64.to_le_bytes());
    let cut = zstd::bulk::compress(&raw, 3).unwrap();
    assert!(matches!(
        decode(Encoding::Bsdiff, &cut, Some(&old), 10, &limits),
        Err(DeltaError::Control(_))
    ));
}

#[test]
fn mutated_payloads_never_panic_or_overrun() {
    let old = noise(6, 8192);
    let new = edited(&old);
    let mut rng = noise(7, 4 * 4096);
    for encoding in Encoding::EVERY {
        let good = encode(encoding, &new, Some(&old), 3).unwrap();
        for round in 0..400 {
            let mut bad = good.clone();
            let flips = 1 + usize::from(rng[round % rng.len()] % 4);
            for f in 0..flips {
                let at = usize::from(rng[(round * 7 + f) % rng.len()]) * 131 % bad.len().max(1);
                if let Some(b) = bad.get_mut(at) {
                    *b ^= rng[(round * 13 + f) % rng.len()] | 1;
                }
            }
            if round % 5 == 0 {
                bad.truncate(bad.len() * usize::from(rng[round % rng.len()]) / 256);
            }
            if let Ok(out) = decode(encoding, &bad, Some(&old), new.len(), &Limits::DEFAULT) {
                assert_eq!(
                    out.len(),
                    new.len(),
                    "{encoding:?}: a decoded chunk has exactly the declared length"
                );
            }
        }
        rng.rotate_left(17);
    }
}

#[test]
fn planes_round_trip_with_tails() {
    for width in [1usize, 2, 4, 8] {
        for len in [0, 1, 7, 8, 9, 1000] {
            let data = noise(len as u64, len);
            assert_eq!(
                from_planes(&to_planes(&data, width), width),
                data,
                "width {width} len {len}"
            );
        }
    }
}

#[test]
fn numeric_deltas_use_the_aligned_part_of_a_window() {
    let count = 16 * 1024;
    let old: Vec<u8> = (0..count)
        .flat_map(|i| (i as f32 * 0.37).sin().to_le_bytes())
        .collect();
    let new: Vec<u8> = old
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * 1.004)
        .flat_map(f32::to_le_bytes)
        .collect();
    // The window starts 1000 bytes before the chunk's old bytes.
    let mut window = noise(9, 1000);
    window.extend_from_slice(&old);
    let best = encode_best_in_window(&new, &window, 1000, None, None, 19);
    assert!(
        matches!(
            best.encoding,
            Encoding::XorPlanes { width: 4 } | Encoding::SubPlanes { width: 4 }
        ),
        "{:?}",
        best.encoding
    );
    let reference = reference_in_window(best.encoding, &window, 1000, new.len());
    let back = decode(
        best.encoding,
        &best.payload,
        Some(reference),
        new.len(),
        &Limits::DEFAULT,
    )
    .unwrap();
    assert_eq!(back, new);
    assert!(reference_in_window(Encoding::ZstdRef, &window, 1000, new.len()).len() == window.len());
    assert!(reference_in_window(Encoding::XorPlanes { width: 4 }, &window, 1 << 30, 10).is_empty());
}

#[test]
fn a_delta_that_does_not_pay_is_not_encoded_at_full_level() {
    let window = crate::testutil::noise(40, 64 * 1024);
    let unrelated = crate::testutil::noise(41, 16 * 1024);
    assert_eq!(
        encode_delta_in_window(&unrelated, &window, 0, None, None, 19),
        None
    );
    let mut edited = window[8192..8192 + 16 * 1024].to_vec();
    edited[100] ^= 1;
    let delta =
        encode_delta_in_window(&edited, &window, 8192, None, None, 19).expect("a delta pays");
    assert!(delta.encoding.needs_reference() && delta.payload.len() < 1024);
}

/// Weights drawn around zero with full-precision mantissas, as trained models hold them.
fn trained_weights(seed: u64, count: usize) -> Vec<f32> {
    let n = noise(seed, count * 4);
    n.chunks_exact(4)
        .map(|b| {
            let u = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (u as f32 / u32::MAX as f32 - 0.5) * 0.2
        })
        .collect()
}

#[test]
fn the_tensor_delta_finds_elements_a_chunk_cuts_through() {
    use crate::tensors::{Layout, TensorSpan, segments};
    // A header, then one f32 tensor. The new header is 6 bytes longer (its metadata grew), so
    // the tensor moved: numeric deltas at the chunk's own offset pair each weight with the
    // wrong old bytes, while the layout pairs it with its twin. The chunk also starts one byte
    // into an element, as content-defined cuts do.
    let old_w = trained_weights(8, 64 * 1024);
    let new_w: Vec<f32> = old_w
        .iter()
        .zip(noise(9, old_w.len()))
        .map(|(w, n)| w * (1.0 + (f32::from(n) - 128.0) / 12_800.0))
        .collect();
    let file = |header: &[u8], w: &[f32]| {
        let mut f = header.to_vec();
        f.extend(w.iter().flat_map(|x| x.to_le_bytes()));
        f
    };
    let (old, new) = (
        file(b"header....", &old_w),
        file(b"header..........", &new_w),
    );
    let layout = |offset: u64| Layout {
        spans: vec![TensorSpan {
            name: "w".into(),
            offset,
            len: (old_w.len() * 4) as u64,
            width: 4,
        }],
    };
    let (start, len) = (17usize, 200_000u32);
    let chunk = &new[start..start + len as usize];
    let cut = segments(
        &layout(16),
        start as u64,
        len,
        Some((&layout(10), 0, old.len() as u64)),
    );
    let tensors = encode_best_in_window(chunk, &old, start, Some(&cut), None, 19);
    let blind = encode_best_in_window(chunk, &old, start, None, None, 19);
    assert_eq!(tensors.encoding, Encoding::Tensors);
    assert!(
        tensors.payload.len() * 10 < blind.payload.len() * 9,
        "tensor delta {} vs layout-blind best {:?} {}",
        tensors.payload.len(),
        blind.encoding,
        blind.payload.len()
    );
    let back = decode_in_window(
        Encoding::Tensors,
        &tensors.payload,
        Some((&old, start)),
        chunk.len(),
        &Limits::DEFAULT,
    )
    .unwrap();
    assert_eq!(back, chunk);

    // A retrained tensor (no old twin): planes alone still beat plain zstd.
    let fresh: Vec<u8> = trained_weights(10, 50_000)
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let alone = [crate::tensors::Segment {
        len: fresh.len() as u32,
        width: 4,
        reference: None,
    }];
    let best = encode_best_in_window(&fresh, &old, 0, Some(&alone), None, 19);
    let zstd = encode(Encoding::Zstd, &fresh, None, 19).unwrap();
    assert_eq!(best.encoding, Encoding::Tensors);
    assert!(
        best.payload.len() < zstd.len(),
        "{} vs {}",
        best.payload.len(),
        zstd.len()
    );
}

#[test]
fn hostile_segment_tables_are_refused() {
    let new = noise(11, 4000);
    let window = noise(12, 4000);
    let table = |rows: &[(u32, u8, SegmentOp, u32)], body_len: usize| {
        let rows: Vec<TableRow> = rows
            .iter()
            .map(|&(len, width, op, reference)| TableRow {
                len,
                width,
                op,
                reference,
            })
            .collect();
        let mut body = postcard::to_allocvec(&rows).unwrap();
        body.extend(&new[..body_len]);
        zstd::bulk::compress(&body, 3).unwrap()
    };
    let cases = [
        // A reference past the window's end.
        table(&[(4000, 4, SegmentOp::Xor, 1)], 4000),
        // Segments longer than the chunk, and shorter.
        table(
            &[
                (3000, 4, SegmentOp::Alone, 0),
                (3000, 1, SegmentOp::Alone, 0),
            ],
            4000,
        ),
        table(&[(3000, 4, SegmentOp::Alone, 0)], 4000),
        // A width no element has.
        table(&[(4000, 3, SegmentOp::Alone, 0)], 4000),
        // Planes shorter than declared.
        table(&[(4000, 4, SegmentOp::Alone, 0)], 3999),
        // An offset so large that adding the length wraps.
        table(&[(4000, 1, SegmentOp::Sub, u32::MAX)], 4000),
    ];
    for (i, payload) in cases.iter().enumerate() {
        let result = decode(
            Encoding::Tensors,
            payload,
            Some(&window),
            4000,
            &Limits::DEFAULT,
        );
        assert!(result.is_err(), "case {i} decoded");
    }
    // And the well-formed table decodes.
    let good = table(&[(4000, 4, SegmentOp::Alone, 0)], 4000);
    let out = decode(
        Encoding::Tensors,
        &good,
        Some(&window),
        4000,
        &Limits::DEFAULT,
    )
    .unwrap();
    assert_eq!(out.len(), 4000);
}

#[test]
fn rebuilt_native_code_travels_as_covers() {
    let old = noise(12, 512 * 1024);
    let new = crate::testutil::rebuilt(&old, 5000, &noise(11, 300));
    let best = encode_best_in_window(&new, &old, 0, None, None, 19);
    assert_eq!(best.encoding, Encoding::Covers);
    let zstd_ref = encode(Encoding::ZstdRef, &new, Some(&old), 19).unwrap();
    assert!(
        best.payload.len() * 3 < zstd_ref.len(),
        "covers {} bytes, zstd with the window {}",
        best.payload.len(),
        zstd_ref.len()
    );
    let back = decode_in_window(
        best.encoding,
        &best.payload,
        Some((&old, 0)),
        new.len(),
        &Limits::DEFAULT,
    )
    .unwrap();
    assert_eq!(back, new);
}

/// The benches' `zstd --patch-from` anchor must be zstd's own encoder, not Ferry's bounded
/// one: with the match tables capped, the anchor sent 4.5 % more bytes on the native pair.
#[test]
fn the_patch_from_anchor_keeps_zstds_own_table_sizes() {
    use zstd::zstd_safe::{CCtx, CParameter};
    let old = noise(21, 3 << 20);
    let new = crate::testutil::rebuilt(&old[1 << 20..(1 << 20) + (512 << 10)], 700, &noise(22, 64));
    let span = (old.len() + new.len()) as u64;
    let mut cctx = CCtx::create();
    cctx.set_parameter(CParameter::CompressionLevel(19))
        .unwrap();
    cctx.set_parameter(CParameter::WindowLog(64 - (span - 1).leading_zeros()))
        .unwrap();
    cctx.set_parameter(CParameter::EnableLongDistanceMatching(true))
        .unwrap();
    cctx.ref_prefix(&old).unwrap();
    let mut own = Vec::with_capacity(zstd::zstd_safe::compress_bound(new.len()));
    cctx.compress2(&mut own, &new).unwrap();
    assert_eq!(zstd_with_prefix(&new, &old, 19).unwrap(), own);
    // Ferry's own encodes do bound them, and still decode.
    let bounded = zstd_with_prefix_bounded(&new, &old, 19).unwrap();
    let back = decode(
        Encoding::ZstdRef,
        &bounded,
        Some(&old),
        new.len(),
        &Limits::DEFAULT,
    )
    .unwrap();
    assert_eq!(back, new);
}

/// A delta update of a sparsely edited 1 GiB artifact took 2.2× as long as installing it
/// whole: every changed chunk paid a suffix sort of its window for covers, which lost to the
/// aligned deltas on every one of them.
#[test]
fn a_delta_update_of_chunks_edited_in_place_spends_no_suffix_sort() {
    let window = noise(13, 1024 * 1024);
    let screened = |new: &[u8], at: usize| -> Vec<Encoding> {
        screen(new, &window, at, None, None)
            .iter()
            .map(|x| x.encoding)
            .collect()
    };
    // Edited in place: a run of bytes rewritten, everything else where it was.
    let mut in_place = window[256 * 1024..512 * 1024].to_vec();
    for b in &mut in_place[4096..69632] {
        *b = b.wrapping_add(5) % 16;
    }
    let tried = screened(&in_place, 256 * 1024);
    assert!(
        tried.contains(&Encoding::SubPlanes { width: 2 }),
        "{tried:?}"
    );
    assert!(!tried.contains(&Encoding::Covers), "{tried:?}");
    // Rebuilt code: everything after an insertion moved, addresses patched. Covers pay here.
    let moved = crate::testutil::rebuilt(&window[256 * 1024..512 * 1024], 100, &noise(14, 64));
    assert!(screened(&moved, 256 * 1024).contains(&Encoding::Covers));
}

#[test]
fn a_first_install_chunk_decodes_against_the_bytes_before_it() {
    let before = noise(31, 600_000);
    let mut chunk = before[100_000..400_000].to_vec();
    for b in chunk.iter_mut().step_by(997) {
        *b ^= 1;
    }
    let encoded = encode_after_own_prefix(&chunk, &before, 19).unwrap();
    assert_eq!(encoded.encoding, Encoding::ZstdRef);
    assert!(
        encoded.payload.len() < chunk.len() / 20,
        "{}",
        encoded.payload.len()
    );
    let back = decode_in_window(
        encoded.encoding,
        &encoded.payload,
        Some((&before, before.len())),
        chunk.len(),
        &Limits::DEFAULT,
    )
    .unwrap();
    assert_eq!(back, chunk);
    // The first chunk has nothing before it: zstd alone.
    let first = encode_after_own_prefix(&chunk, &[], 19).unwrap();
    assert_eq!(first.encoding, Encoding::Zstd);
    assert_eq!(
        decode(
            Encoding::Zstd,
            &first.payload,
            None,
            chunk.len(),
            &Limits::DEFAULT
        )
        .unwrap(),
        chunk
    );
}

/// The first chunk of a first install (nothing before it) was compressed with the delta
/// encodes' capped match tables (2^20 entries), whose level-19 search reaches back 512 KiB:
/// the 3.6 MiB first chunk of a native library sent 10 KB (1 %) more than zstd -19 over the
/// same bytes. It gets the first install's tables, as every later chunk does, which up to
/// 4 MiB (the largest chunk) are zstd's own: the same frame as zstd -19.
#[test]
fn a_first_installs_first_chunk_is_what_zstd_19_makes_of_it() {
    // Low-entropy bytes with repeats near and far, as code has.
    let block: Vec<u8> = noise(32, 700_000).iter().map(|b| b % 16).collect();
    let mut chunk = Vec::new();
    for k in 0..4u8 {
        let mut copy = block.clone();
        copy.iter_mut()
            .step_by(101 + usize::from(k))
            .for_each(|b| *b ^= k);
        chunk.extend_from_slice(&copy);
    }
    let first = encode_after_own_prefix(&chunk, &[], 19).unwrap();
    assert_eq!(first.encoding, Encoding::Zstd);
    let anchor = zstd::bulk::compress(&chunk, 19).unwrap();
    assert!(
        first.payload.len() <= anchor.len(),
        "{} bytes where zstd -19 makes {}",
        first.payload.len(),
        anchor.len()
    );
    let back = decode(
        Encoding::Zstd,
        &first.payload,
        None,
        chunk.len(),
        &Limits::DEFAULT,
    )
    .unwrap();
    assert_eq!(back, chunk);
}

/// A delta update of 512 MiB of new random bytes took 19 s where installing them whole took
/// 2.6 s: every chunk was screened against its window (zstd with the window as prefix and
/// four numeric deltas), and every screen lost to the stored chunk.
#[test]
fn a_delta_update_of_unrelated_bytes_screens_no_window() {
    let window = noise(15, 4 * 1024 * 1024);
    let new = noise(16, 1024 * 1024);
    let tried: Vec<Encoding> = screen(&new, &window, 1024 * 1024, None, None)
        .iter()
        .map(|x| x.encoding)
        .collect();
    assert_eq!(tried, [Encoding::Zstd]);
    assert!(encode_delta_in_window(&new, &window, 1024 * 1024, None, None, 19).is_none());
}
