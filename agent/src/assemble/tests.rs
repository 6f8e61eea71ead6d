use super::*;
use ferry_shared::delta::{Encoded, encode_best_in_window};
use ferry_shared::testutil::{SMALL, noise};

struct Setup {
    dir: tempfile::TempDir,
    old: Vec<u8>,
    new: Vec<u8>,
    source: LocalSource,
    target: ChunkIndex,
}

/// v1 on disk; v2 = v1 with a few bytes changed in two places.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let old = noise(1, 400_000);
    let mut new = old.clone();
    for b in &mut new[100_000..100_040] {
        *b ^= 0x5a;
    }
    for b in &mut new[300_000..300_010] {
        *b = b.wrapping_add(1);
    }
    let path = dir.path().join("v1.bin");
    std::fs::write(&path, &old).unwrap();
    let cut = ChunkIndex::build(old.as_slice(), SMALL).unwrap();
    let source = LocalSource {
        file: cut.hash,
        path,
        index: cut.index,
    };
    let target = ChunkIndex::build(new.as_slice(), SMALL).unwrap().index;
    Setup {
        dir,
        old,
        new,
        source,
        target,
    }
}

/// A first install of a file that repeats itself with small changes, so that each chunk
/// encodes smallest against the bytes before it.
fn repetitive() -> Setup {
    let block = noise(11, 24_000);
    let mut new = Vec::new();
    for k in 0..16u8 {
        let mut copy = block.clone();
        for at in (k as usize * 97..copy.len()).step_by(1500) {
            copy[at] ^= k | 1;
        }
        new.extend(copy);
    }
    let target = ChunkIndex::build(new.as_slice(), SMALL).unwrap().index;
    let dir = tempfile::tempdir().unwrap();
    let source = LocalSource {
        file: Digest::of(b"none"),
        path: dir.path().join("none"),
        index: target.clone(),
    };
    Setup {
        dir,
        old: Vec::new(),
        new,
        source,
        target,
    }
}

/// What a coordinator would send for `want`.
fn serve(s: &Setup, want: &ChunkWant) -> Encoded {
    let (offset, c) = s.target.spans().nth(want.ordinal as usize).unwrap();
    let chunk = &s.new[offset as usize..(offset + u64::from(c.len)) as usize];
    match &want.reference {
        Some(w) => {
            // A window of the new version itself (a first install), or of the old one.
            let from = if w.file == Digest::of(&s.new) {
                &s.new
            } else {
                &s.old
            };
            let window = &from[w.offset as usize..(w.offset + w.len) as usize];
            encode_best_in_window(chunk, window, w.at as usize, None, None, 3)
        }
        None => Encoded {
            encoding: Encoding::Zstd,
            payload: zstd::encode_all(chunk, 3).unwrap(),
        },
    }
}

fn open(s: &Setup, sources: Vec<LocalSource>) -> (Assembly, Opened) {
    Assembly::open(
        &s.dir.path().join("staged.bin"),
        Digest::of(&s.new),
        s.target.clone(),
        s.new.len() as u64,
        sources,
    )
    .unwrap()
}

#[test]
fn unchanged_chunks_are_copied_and_only_changed_ones_fetched_as_deltas() {
    let s = setup();
    let (mut asm, opened) = open(&s, vec![s.source.clone()]);
    assert_eq!(opened.resumed, 0);
    let copied = asm.copy_local().unwrap();
    let wants = asm.wants();
    // Two edits touch at most a few chunks each (a cut point may move with the bytes).
    assert!(!wants.is_empty() && wants.len() <= 8, "{wants:?}");
    assert!(wants.iter().all(|w| w.reference.is_some()));
    let fetched: u64 = wants
        .iter()
        .map(|w| u64::from(s.target.chunks[w.ordinal as usize].len))
        .sum();
    assert_eq!(copied + fetched, s.new.len() as u64);
    let mut on_wire = 0;
    for want in &wants {
        let encoded = serve(&s, want);
        on_wire += encoded.payload.len();
        asm.accept(want, encoded.encoding, &encoded.payload)
            .unwrap();
    }
    assert!(on_wire < fetched as usize / 4, "{on_wire} of {fetched}");
    assert!(asm.wants().is_empty());
    asm.finish(s.new.len() as u64, &Digest::of(&s.new)).unwrap();
    assert_eq!(
        std::fs::read(s.dir.path().join("staged.bin")).unwrap(),
        s.new
    );
}

#[test]
fn a_reopened_staging_file_resumes_at_the_next_missing_chunk() {
    let s = setup();
    let (mut asm, _) = open(&s, Vec::new());
    let wants = asm.wants();
    assert_eq!(
        wants.len(),
        s.target.chunks.len(),
        "no sources: all fetched"
    );
    // Each chunk but the first against the bytes before it in the new version.
    let own = Digest::of(&s.new);
    assert_eq!(wants[0].reference, None);
    for want in &wants[1..] {
        let (offset, _) = s.target.spans().nth(want.ordinal as usize).unwrap();
        let w = want.reference.expect("a window of the new version");
        assert_eq!((w.file, w.offset + w.len, w.at), (own, offset, w.len));
    }
    let half = wants.len() / 2;
    for want in &wants[..half] {
        let e = serve(&s, want);
        asm.accept(want, e.encoding, &e.payload).unwrap();
    }
    drop(asm); // the link drops, or the agent restarts

    let (mut asm, opened) = open(&s, Vec::new());
    assert_eq!(opened.resumed as usize, half);
    let rest = asm.wants();
    assert_eq!(rest, wants[half..].to_vec());
    for want in &rest {
        let e = serve(&s, want);
        asm.accept(want, e.encoding, &e.payload).unwrap();
    }
    asm.finish(s.new.len() as u64, &Digest::of(&s.new)).unwrap();
}

/// A first install whose chunk before another failed: the later chunk, encoded against bytes
/// that are not in place, is not decoded from the zeros there; it is asked for again whole,
/// with its second chance intact.
#[test]
fn a_chunk_against_bytes_not_yet_in_place_is_asked_for_again_whole() {
    let s = repetitive();
    let (mut asm, _) = open(&s, Vec::new());
    let wants = asm.wants();
    assert!(wants.len() >= 3, "the test needs three chunks");
    let first = serve(&s, &wants[0]);
    asm.accept(&wants[0], first.encoding, &first.payload)
        .unwrap();
    // The second chunk never arrives; the third was encoded against it.
    let third = wants[2];
    let e = serve(&s, &third);
    assert!(e.encoding.needs_reference(), "{:?}", e.encoding);
    let err = asm.accept(&third, e.encoding, &e.payload).unwrap_err();
    assert!(
        matches!(err, AssembleError::WindowNotReady { ordinal } if ordinal == third.ordinal),
        "{err}"
    );
    asm.fetch_whole(third.ordinal);
    let again = asm.wants();
    let third_again = again.iter().find(|w| w.ordinal == third.ordinal).unwrap();
    assert_eq!(third_again.reference, None);
    assert!(
        asm.retry_whole(third.ordinal),
        "the second chance is not spent"
    );
    for want in &again {
        let e = serve(&s, want);
        asm.accept(want, e.encoding, &e.payload).unwrap();
    }
    asm.finish(s.new.len() as u64, &Digest::of(&s.new)).unwrap();
}

/// Only bytes before a chunk can be its window in the new version: a window reaching into or
/// past the chunk is refused, never read.
#[test]
fn a_window_of_the_new_version_must_end_before_the_chunk() {
    let s = repetitive();
    let (mut asm, _) = open(&s, Vec::new());
    let wants = asm.wants();
    let first = serve(&s, &wants[0]);
    asm.accept(&wants[0], first.encoding, &first.payload)
        .unwrap();
    let mut want = wants[1];
    let w = want.reference.as_mut().unwrap();
    w.len += 1;
    let e = serve(&s, &want);
    let err = asm.accept(&want, e.encoding, &e.payload).unwrap_err();
    assert!(matches!(err, AssembleError::Rejected { .. }), "{err}");
}

#[test]
fn a_bad_delta_is_rejected_and_the_chunk_asked_for_whole() {
    let s = setup();
    let (mut asm, _) = open(&s, vec![s.source.clone()]);
    asm.copy_local().unwrap();
    let want = asm.wants()[0];
    // Right format, wrong content: a plain chunk of other bytes.
    let len = s.target.chunks[want.ordinal as usize].len as usize;
    let e = Encoded {
        encoding: Encoding::Zstd,
        payload: zstd::encode_all(&noise(9, len)[..], 3).unwrap(),
    };
    let err = asm.accept(&want, e.encoding, &e.payload).unwrap_err();
    assert!(matches!(err, AssembleError::Rejected { .. }), "{err}");
    // Garbage payloads are refused the same way, whatever the encoding.
    for encoding in [Encoding::Bsdiff, Encoding::ZstdRef, Encoding::Raw] {
        assert!(matches!(
            asm.accept(&want, encoding, b"\x00garbage"),
            Err(AssembleError::Rejected { .. })
        ));
    }
    assert!(asm.retry_whole(want.ordinal));
    assert!(!asm.retry_whole(want.ordinal), "one second chance only");
    let again = asm
        .wants()
        .into_iter()
        .find(|w| w.ordinal == want.ordinal)
        .unwrap();
    assert_eq!(again.reference, None);
    let e = serve(&s, &again);
    asm.accept(&again, e.encoding, &e.payload).unwrap();
}

/// An assembly over the installed version whose first chunk has a bit flipped, as a damaged
/// disk would leave it.
fn with_first_chunk_of_source_damaged() -> (Setup, Assembly) {
    let s = setup();
    let mut damaged = s.old.clone();
    damaged[100] ^= 1;
    std::fs::write(&s.source.path, &damaged).unwrap();
    let (asm, _) = open(&s, vec![s.source.clone()]);
    (s, asm)
}

#[test]
fn a_damaged_local_copy_is_fetched_whole_instead() {
    let (s, mut asm) = with_first_chunk_of_source_damaged();
    let copied = asm.copy_local().unwrap();
    let wants = asm.wants();
    let w0 = wants
        .iter()
        .find(|w| w.ordinal == 0)
        .expect("chunk 0 wanted");
    assert_eq!(
        w0.reference, None,
        "asked whole, not against the damaged copy"
    );
    let total: u64 = wants
        .iter()
        .map(|w| u64::from(s.target.chunks[w.ordinal as usize].len))
        .sum();
    assert_eq!(copied + total, s.new.len() as u64);
    assert!(
        asm.retry_whole(0),
        "a failed local copy does not spend the chunk's second chance"
    );
}

/// The download runs the local copies beside the fetches: the copies taken out are not asked
/// for meanwhile, and one whose local bytes no longer hash right is asked for whole once its
/// outcome is recorded.
#[test]
fn copies_taken_out_are_not_fetched_and_a_failed_one_is_fetched_whole_after() {
    let (s, mut asm) = with_first_chunk_of_source_damaged();
    let copies = asm.take_copies().unwrap();
    let fetches = asm.wants();
    assert!(!fetches.is_empty() && fetches.iter().all(|w| w.reference.is_some()));
    assert!(fetches.iter().all(|w| w.ordinal != 0), "{fetches:?}");
    for want in &fetches {
        let encoded = serve(&s, want);
        asm.accept(want, encoded.encoding, &encoded.payload)
            .unwrap();
    }
    assert!(
        asm.wants().is_empty(),
        "nothing more until the copies are in"
    );
    let copied = copies.run().unwrap();
    assert_eq!(copied.failed, vec![0]);
    asm.record_copies(&copied);
    let wants = asm.wants();
    assert_eq!(
        wants,
        vec![ChunkWant {
            ordinal: 0,
            reference: None
        }]
    );
    let encoded = serve(&s, &wants[0]);
    asm.accept(&wants[0], encoded.encoding, &encoded.payload)
        .unwrap();
    asm.finish(s.new.len() as u64, &Digest::of(&s.new)).unwrap();
    assert_eq!(
        std::fs::read(s.dir.path().join("staged.bin")).unwrap(),
        s.new
    );
}

#[test]
fn a_chunk_asked_for_whole_also_gets_one_second_chance() {
    let s = setup();
    let (mut asm, _) = open(&s, Vec::new());
    let want = asm.wants()[0];
    assert_eq!(want.reference, None);
    assert!(matches!(
        asm.accept(&want, Encoding::Raw, b"not the chunk"),
        Err(AssembleError::Rejected { .. })
    ));
    assert!(asm.retry_whole(want.ordinal), "asked again, whole");
    assert!(asm.wants().contains(&want));
    assert!(
        !asm.retry_whole(want.ordinal),
        "the second failure is final"
    );
}

#[test]
fn a_file_that_does_not_hash_right_is_not_finished() {
    let s = setup();
    let (mut asm, _) = open(&s, vec![s.source.clone()]);
    asm.copy_local().unwrap();
    assert!(matches!(
        asm.finish(s.new.len() as u64, &Digest::of(&s.new)),
        Err(AssembleError::Whole(_))
    ));
}

/// The whole-file check after every chunk is in place (hashed on two threads since
/// `Digest::of_file`): a size other than the signed one is refused before hashing, a hash
/// other than the signed one after, each saying what it found; the staged file stays for the
/// next attempt.
#[test]
fn a_staged_file_is_refused_by_signed_size_or_hash_and_kept() {
    let s = setup();
    let (mut asm, _) = open(&s, vec![s.source.clone()]);
    asm.copy_local().unwrap();
    for want in asm.wants() {
        let encoded = serve(&s, &want);
        asm.accept(&want, encoded.encoding, &encoded.payload)
            .unwrap();
    }
    asm.sync().unwrap();
    let size = s.new.len() as u64;
    let reopen = || open(&s, vec![s.source.clone()]).0;
    match asm.verify(size + 1, &Digest::of(&s.new)) {
        Err(AssembleError::Whole(why)) => {
            assert!(
                why.contains(&format!("{size} bytes (signed: {} bytes", size + 1)),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    match reopen().verify(size, &Digest::of(b"another version")) {
        Err(AssembleError::Whole(why)) => {
            let found = Digest::of(&s.new).short();
            assert!(why.contains(&format!("hashing to {found}")), "{why}")
        }
        other => panic!("{other:?}"),
    }
    reopen().verify(size, &Digest::of(&s.new)).unwrap();
    assert_eq!(
        std::fs::read(s.dir.path().join("staged.bin")).unwrap(),
        s.new
    );
}

#[test]
fn identical_chunks_are_fetched_once() {
    let dir = tempfile::tempdir().unwrap();
    let block = noise(5, 60_000);
    let mut new = block.clone();
    new.extend(noise(6, 5000));
    new.extend(&block);
    let target = ChunkIndex::build(new.as_slice(), SMALL).unwrap().index;
    let distinct: HashSet<Digest> = target.chunks.iter().map(|c| c.hash).collect();
    assert!(
        distinct.len() < target.chunks.len(),
        "the test needs repeats"
    );
    let (mut asm, _) = Assembly::open(
        &dir.path().join("f"),
        Digest::of(&new),
        target.clone(),
        new.len() as u64,
        Vec::new(),
    )
    .unwrap();
    let wants = asm.wants();
    assert_eq!(wants.len(), distinct.len());
    for want in &wants {
        let (offset, c) = target.spans().nth(want.ordinal as usize).unwrap();
        let chunk = &new[offset as usize..(offset + u64::from(c.len)) as usize];
        asm.accept(want, Encoding::Raw, chunk).unwrap();
    }
    asm.finish(new.len() as u64, &Digest::of(&new)).unwrap();
}

/// Issue 15: armv7 is 32-bit. An artifact past 4 GiB must be assembled at the right offsets
/// there: `usize` is 32 bits, offsets and sizes are not. The staging file is sparse; only the
/// last chunk, which starts past 4 GiB, is written and read back.
#[test]
fn a_chunk_past_four_gib_lands_at_its_offset_on_every_target() {
    const MIB: u32 = 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let last = noise(7, MIB as usize);
    // 1,151 chunks of 4 MiB nobody sends here (distinct hashes), then the real one.
    let mut chunks: Vec<ferry_shared::chunk::ChunkRef> = (0u32..1151)
        .map(|i| ferry_shared::chunk::ChunkRef {
            len: 4 * MIB,
            hash: Digest::of(&i.to_le_bytes()),
        })
        .collect();
    chunks.push(ferry_shared::chunk::ChunkRef {
        len: MIB,
        hash: Digest::of(&last),
    });
    let target = ChunkIndex {
        params: ferry_shared::chunk::ChunkParams::DEFAULT,
        chunks,
    };
    let size: u64 = 1151 * 4 * u64::from(MIB) + u64::from(MIB);
    let offset: u64 = 1151 * 4 * u64::from(MIB);
    assert!(
        offset > u64::from(u32::MAX),
        "the last chunk starts past 4 GiB"
    );
    let path = dir.path().join("big.bin");
    let (mut assembly, opened) =
        Assembly::open(&path, Digest::of(b"big"), target, size, Vec::new()).unwrap();
    assert_eq!(opened.resumed, 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    let want = assembly
        .wants()
        .into_iter()
        .find(|w| w.ordinal == 1151)
        .expect("the last chunk is wanted");
    let payload = zstd::encode_all(last.as_slice(), 3).unwrap();
    assembly.accept(&want, Encoding::Zstd, &payload).unwrap();

    let mut back = vec![0u8; last.len()];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut back, offset)
        .unwrap();
    assert!(back == last, "the chunk was written somewhere else");
    let mut before = vec![0xffu8; 16];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut before, offset - 16)
        .unwrap();
    assert_eq!(before, vec![0u8; 16], "nothing written before it");
}
