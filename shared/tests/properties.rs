//! Properties of the pure cores, on inputs proptest generates (and shrinks when one fails):
//! version ordering, rollout plans and their waves, chunk planning, and delta round trips.

use ferry_shared::chunk::{ChunkIndex, ChunkParams};
use ferry_shared::delta::{Encoding, Limits, decode, encode};
use ferry_shared::plan::{Step, plan};
use ferry_shared::rollout::{BUCKETS, Plan, Selector, Wave};
use ferry_shared::testutil::noise;
use ferry_shared::{ModelName, Version};
use proptest::prelude::*;

/// A version from its parts: a release, or a pre-release with one or two identifiers.
fn version() -> impl Strategy<Value = Version> {
    let identifier = prop_oneof![
        (0u64..20).prop_map(|n| n.to_string()),
        "(alpha|beta|rc|experiment-[a-z]{1,6})",
    ];
    (
        0u64..4,
        0u64..4,
        0u64..4,
        proptest::collection::vec(identifier, 0..3),
    )
        .prop_map(|(major, minor, patch, pre)| {
            let text = if pre.is_empty() {
                format!("{major}.{minor}.{patch}")
            } else {
                format!("{major}.{minor}.{patch}-{}", pre.join("."))
            };
            text.parse().expect("generated versions are valid")
        })
}

proptest! {
    /// Versions read back as written, and order as a total order does; a pre-release sorts
    /// below its release.
    #[test]
    fn versions_round_trip_and_order_totally(a in version(), b in version(), c in version()) {
        prop_assert_eq!(a.to_string().parse::<Version>().ok(), Some(a.clone()));
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        if a <= b && b <= c {
            prop_assert!(a <= c);
        }
        if a.is_prerelease() {
            let release = Version::new(a.major(), a.minor(), a.patch());
            prop_assert!(a < release);
        }
    }
}

/// A plan that validates: rising shares ending at every bucket, shadow waves first, the
/// last of them followed by a serving wave of the same share (the same devices, now serving).
fn valid_plan() -> impl Strategy<Value = Plan> {
    (
        proptest::collection::btree_set(1..BUCKETS, 0..5),
        0usize..3,
        "[a-z0-9-]{1,12}",
    )
        .prop_map(|(cuts, shadows, id)| {
            let mut shares: Vec<u32> = cuts.into_iter().collect();
            shares.push(BUCKETS);
            let shadows = shadows.min(shares.len() - 1);
            let wave = |share, shadow| Wave {
                share,
                min_bake_secs: 0,
                gates: Vec::new(),
                shadow,
                needs_approval: false,
            };
            // Shadow waves first; then the last shadow wave's devices serving; then the rest.
            let mut waves: Vec<Wave> = shares[..shadows].iter().map(|s| wave(*s, true)).collect();
            if let Some(last) = shadows.checked_sub(1) {
                waves.push(wave(shares[last], false));
            }
            waves.extend(shares[shadows..].iter().map(|s| wave(*s, false)));
            let mut plan = Plan::with_default_waves(
                &id,
                "m".parse::<ModelName>().expect("valid name"),
                Version::new(1, 0, 0),
                Selector::parse("").expect("the empty selector"),
            );
            plan.waves = waves;
            plan
        })
}

proptest! {
    /// In a valid plan, every bucket falls in one wave, later buckets never in an earlier
    /// wave, and the buckets up to wave `i` are exactly its cumulative share.
    #[test]
    fn each_wave_holds_exactly_its_share_of_the_buckets(plan in valid_plan()) {
        prop_assert!(plan.validate().is_ok(), "{:?}", plan.validate());
        let mut counts = vec![0u32; plan.waves.len()];
        let mut last = 0;
        for bucket in 0..BUCKETS {
            let wave = plan.wave_of(bucket);
            prop_assert!(wave < plan.waves.len());
            prop_assert!(wave >= last);
            last = wave;
            counts[wave] += 1;
        }
        let mut cumulative = 0;
        for (wave, count) in plan.waves.iter().zip(counts) {
            cumulative += count;
            prop_assert_eq!(cumulative, wave.share);
        }
    }

    /// Validation answers every plan, however absurd its numbers, without panicking; a
    /// plan whose shares do not end at every bucket is refused.
    #[test]
    fn validation_refuses_without_panicking(
        mut plan in valid_plan(),
        shares in proptest::collection::vec(any::<u32>(), 0..6),
        left_out in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), -2.0f64..2.0],
    ) {
        for (wave, share) in plan.waves.iter_mut().zip(&shares) {
            wave.share = *share;
        }
        plan.stragglers.max_left_out = left_out;
        if let Ok(()) = plan.validate() {
            prop_assert_eq!(plan.waves.last().map(|w| w.share), Some(BUCKETS));
            prop_assert!((0.0..=1.0).contains(&left_out));
        }
    }
}

/// An edited copy of `old`: byte ranges overwritten, inserted or removed, as versions of
/// an artifact differ.
fn edited(old: &[u8], edits: &[(u8, usize, usize, u64)]) -> Vec<u8> {
    let mut new = old.to_vec();
    for &(kind, at, len, seed) in edits {
        let at = at % (new.len() + 1);
        let len = len.min(new.len() - at);
        let (end, bytes) = match kind % 3 {
            0 => (at + len, noise(seed, len)),
            1 => (at, noise(seed, len)),
            _ => (at + len, Vec::new()),
        };
        new.splice(at..end, bytes);
    }
    new
}

fn small() -> ChunkParams {
    ferry_shared::testutil::SMALL
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// A chunk plan accounts for every byte of the target once: copies name identical
    /// chunks inside their source, fetches carry windows inside their source and within the
    /// bound, and copied plus missing bytes are the whole target.
    #[test]
    fn a_chunk_plan_covers_the_target_with_local_copies_and_bounded_windows(
        seed in any::<u64>(),
        len in 0usize..200_000,
        edits in proptest::collection::vec((any::<u8>(), any::<usize>(), 0usize..20_000, any::<u64>()), 0..6),
        window_max in prop_oneof![Just(0u64), 1u64..1 << 20],
    ) {
        let old = noise(seed, len);
        let new = edited(&old, &edits);
        let source = ChunkIndex::build(old.as_slice(), small()).expect("cut").index;
        let target = ChunkIndex::build(new.as_slice(), small()).expect("cut").index;
        let plan = plan(&target, std::slice::from_ref(&source), window_max);
        prop_assert_eq!(plan.steps.len(), target.chunks.len());
        prop_assert_eq!(plan.bytes_local + plan.bytes_missing, target.total_len());
        for ((offset, chunk), step) in target.spans().zip(&plan.steps) {
            match step {
                Step::Copy { source: 0, offset: at, len } => {
                    prop_assert_eq!(*len, chunk.len);
                    let at = *at as usize;
                    prop_assert_eq!(
                        &old[at..at + *len as usize],
                        &new[offset as usize..(offset + u64::from(chunk.len)) as usize]
                    );
                }
                Step::Copy { source, .. } => prop_assert!(false, "source {} of 1", source),
                Step::Fetch { window: Some(w), .. } => {
                    prop_assert_eq!(w.source, 0);
                    prop_assert!(w.len <= window_max);
                    prop_assert!(w.offset + w.len <= source.total_len());
                    prop_assert!(w.at <= w.len);
                }
                Step::Fetch { window: None, .. } => {}
            }
        }
    }

    /// Every encoding that accepts a chunk gives it back exactly, against the reference it
    /// was encoded with.
    #[test]
    fn every_encoding_gives_back_what_it_encoded(
        seed in any::<u64>(),
        len in 1usize..40_000,
        edits in proptest::collection::vec((any::<u8>(), any::<usize>(), 0usize..4_000, any::<u64>()), 0..5),
        repetitive in any::<bool>(),
    ) {
        let mut reference = noise(seed, len);
        if repetitive {
            // Text-like bytes: few symbols, so the compressors find matches.
            for b in &mut reference {
                *b = b'a' + *b % 4;
            }
        }
        let new = edited(&reference, &edits);
        for encoding in Encoding::EVERY {
            let reference = encoding.needs_reference().then_some(reference.as_slice());
            if let Ok(payload) = encode(encoding, &new, reference, 3) {
                let back = decode(encoding, &payload, reference, new.len(), &Limits::DEFAULT);
                prop_assert_eq!(back.as_ref().ok(), Some(&new), "{}", encoding);
            }
        }
    }
}
