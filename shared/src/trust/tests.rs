//! One test per attack class, named after it: each shows the refusal, and that the trusted
//! state did not move (the device stays on what it verified).

use std::collections::BTreeMap;

use super::*;
use crate::digest::Digest;
use crate::manifest::{Accelerator, Lineage, MANIFEST_SCHEMA, Release, Target, Variant};
use crate::name::ModelName;
use crate::sign::{SecretKey, SignedRelease};
use crate::version::Version;

const DAY: u64 = 86_400;
const NOW: u64 = 1_800_000_000;

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

fn m() -> ModelName {
    "detector".parse().unwrap()
}

/// Root keys 1–3 (threshold 2), publishers 10 and 11 (threshold 1), snapshot key 20.
struct Keys {
    root: Vec<SecretKey>,
    publishers: Vec<SecretKey>,
    snapshot: SecretKey,
}

fn keys() -> Keys {
    Keys {
        root: (1..=3).map(key).collect(),
        publishers: vec![key(10), key(11)],
        snapshot: key(20),
    }
}

fn role(keys: &[&SecretKey], threshold: u32) -> RoleKeys {
    RoleKeys {
        keys: keys.iter().map(|k| k.public().key_id()).collect(),
        threshold,
    }
}

fn root(
    version: u64,
    root_keys: &[&SecretKey],
    publishers: &[&SecretKey],
    snap: &SecretKey,
) -> Root {
    let mut all: BTreeMap<_, _> = BTreeMap::new();
    for k in root_keys.iter().chain(publishers).chain([&snap]) {
        all.insert(k.public().key_id(), k.public());
    }
    Root {
        version,
        expires: NOW + 365 * DAY,
        keys: all,
        root: role(root_keys, 2),
        targets: role(publishers, 1),
        snapshot: role(&[snap], 1),
    }
}

fn trusted(k: &Keys) -> TrustState {
    let r = root(
        1,
        &[&k.root[0], &k.root[1], &k.root[2]],
        &[&k.publishers[0], &k.publishers[1]],
        &k.snapshot,
    );
    TrustState::from_initial_root(&sign_metadata(Role::Root, &r, &[&k.root[0], &k.root[1]]))
        .unwrap()
}

fn release(version: &str, by: &SecretKey) -> Vec<u8> {
    signed_release(version, by, 1, NOW + 30 * DAY)
}

/// A release manifest with its own revision and expiry.
fn signed_release(version: &str, by: &SecretKey, revision: u32, expires: u64) -> Vec<u8> {
    let release = Release {
        schema: MANIFEST_SCHEMA,
        name: m(),
        version: v(version),
        revision,
        expires,
        created_at: 0,
        created_by: "ci".into(),
        variants: vec![Variant {
            target: Target::Any,
            accelerator: Accelerator::Any,
            file_name: "model.bin".parse().unwrap(),
            size: 3,
            hash: Digest::of(b"abc"),
            chunks: Digest::of(b"index"),
            kind: Default::default(),
            requires: Vec::new(),
        }],
        cpu_fallback: false,
        metadata: Lineage::default(),
    };
    SignedRelease::sign(&release, by).unwrap().envelope_bytes
}

fn snapshot(version: u64, expires: u64, releases: &[(&str, &[u8])]) -> Snapshot {
    let mut listed = BTreeMap::new();
    for (ver, envelope) in releases {
        listed.insert(
            v(ver),
            ReleaseMeta {
                hash: Digest::of(envelope),
                length: envelope.len() as u64,
            },
        );
    }
    Snapshot {
        version,
        expires,
        releases: BTreeMap::from([(m(), listed)]),
    }
}

#[test]
fn a_good_chain_verifies_end_to_end() {
    let k = keys();
    let mut state = trusted(&k);
    let r = release("2.0.0", &k.publishers[0]);
    let s = sign_metadata(
        Role::Snapshot,
        &snapshot(7, NOW + DAY, &[("2.0.0", &r)]),
        &[&k.snapshot],
    );
    let snap = state.update_snapshot(&s, NOW).unwrap();
    let release = state
        .check_release(&snap, &m(), &v("2.0.0"), &r, NOW)
        .unwrap();
    assert_eq!(release.release.version, v("2.0.0"));
    assert_eq!(state.snapshot_version(&m()), 7);
}

#[test]
fn arbitrary_software_signed_by_an_unknown_key_is_refused() {
    let k = keys();
    let mut state = trusted(&k);
    let stranger = key(99);
    let r = release("2.0.0", &stranger);
    let snap = snapshot(1, NOW + DAY, &[("2.0.0", &r)]);
    assert!(matches!(
        state.check_release(&snap, &m(), &v("2.0.0"), &r, NOW),
        Err(TrustError::BelowThreshold {
            role: Role::Targets,
            valid: 0,
            ..
        })
    ));
    // A snapshot signed by a stranger is refused too, and changes nothing.
    let s = sign_metadata(Role::Snapshot, &snap, &[&stranger]);
    assert!(matches!(
        state.update_snapshot(&s, NOW),
        Err(TrustError::BelowThreshold {
            role: Role::Snapshot,
            ..
        })
    ));
    assert_eq!(state.snapshot_version(&m()), 0);
}

#[test]
fn a_root_signed_below_its_threshold_is_refused() {
    let k = keys();
    let mut state = trusted(&k);
    let next = root(
        2,
        &[&k.root[0], &k.root[1], &k.root[2]],
        &[&k.publishers[0]],
        &k.snapshot,
    );
    // One of three root keys, twice: still one distinct signer.
    let bytes = sign_metadata(Role::Root, &next, &[&k.root[0], &k.root[0]]);
    assert!(matches!(
        state.update_root(&bytes),
        Err(TrustError::BelowThreshold {
            role: Role::Root,
            valid: 1,
            threshold: 2
        })
    ));
    assert_eq!(state.root().version, 1);
    // An initial root must carry its own threshold as well.
    let lone = sign_metadata(Role::Root, &next, &[&k.root[2]]);
    assert!(TrustState::from_initial_root(&lone).is_err());
}

#[test]
fn root_rotation_walks_the_chain_with_both_thresholds() {
    let k = keys();
    let mut state = trusted(&k);
    let (n1, n2, n3) = (key(4), key(5), key(6));
    let next = root(
        2,
        &[&n1, &n2, &n3],
        &[&k.publishers[0], &k.publishers[1]],
        &k.snapshot,
    );
    // Signed only by the new keys: the old root never agreed.
    let only_new = sign_metadata(Role::Root, &next, &[&n1, &n2]);
    assert!(matches!(
        state.update_root(&only_new),
        Err(TrustError::BelowThreshold {
            role: Role::Root,
            ..
        })
    ));
    // Signed only by the old keys: the new keys never agreed.
    let only_old = sign_metadata(Role::Root, &next, &[&k.root[0], &k.root[1]]);
    assert!(state.update_root(&only_old).is_err());
    // Both thresholds: accepted; from now on only the new keys count.
    let both = sign_metadata(Role::Root, &next, &[&k.root[0], &k.root[1], &n1, &n2]);
    state.update_root(&both).unwrap();
    assert_eq!(state.root().version, 2);
    let third = root(
        3,
        &[&k.root[0], &k.root[1], &k.root[2]],
        &[&k.publishers[0]],
        &k.snapshot,
    );
    let by_retired = sign_metadata(Role::Root, &third, &[&k.root[0], &k.root[1], &k.root[2]]);
    assert!(
        state.update_root(&by_retired).is_err(),
        "retired root keys no longer sign"
    );
}

#[test]
fn rollback_attack_on_the_root_is_refused() {
    let k = keys();
    let mut state = trusted(&k);
    let all = [&k.root[0], &k.root[1], &k.root[2]];
    let pubs = [&k.publishers[0], &k.publishers[1]];
    let v2 = sign_metadata(Role::Root, &root(2, &all, &pubs, &k.snapshot), &all);
    state.update_root(&v2).unwrap();
    // The same or an older root, or skipping a version, is refused.
    for version in [1, 2, 4] {
        let bytes = sign_metadata(Role::Root, &root(version, &all, &pubs, &k.snapshot), &all);
        assert!(
            matches!(
                state.update_root(&bytes),
                Err(TrustError::Rollback {
                    role: Role::Root,
                    ..
                })
            ),
            "root {version}"
        );
    }
    assert_eq!(state.root().version, 2);
}

#[test]
fn rollback_attack_on_the_snapshot_is_refused_even_across_a_root_rotation() {
    // The go-tuf CVE-2022-29173 class: a counter forgotten when another role changes.
    let k = keys();
    let mut state = trusted(&k);
    let s9 = sign_metadata(Role::Snapshot, &snapshot(9, NOW + DAY, &[]), &[&k.snapshot]);
    state.update_snapshot(&s9, NOW).unwrap();
    let s8 = sign_metadata(Role::Snapshot, &snapshot(8, NOW + DAY, &[]), &[&k.snapshot]);
    assert!(matches!(
        state.update_snapshot(&s8, NOW),
        Err(TrustError::Rollback {
            role: Role::Snapshot,
            trusted: 9,
            got: 8
        })
    ));
    // Rotate the snapshot key through a new root: the counter still stands.
    let new_snap = key(21);
    let all = [&k.root[0], &k.root[1], &k.root[2]];
    let v2 = sign_metadata(
        Role::Root,
        &root(2, &all, &[&k.publishers[0], &k.publishers[1]], &new_snap),
        &all,
    );
    state.update_root(&v2).unwrap();
    let old_under_new_key =
        sign_metadata(Role::Snapshot, &snapshot(8, NOW + DAY, &[]), &[&new_snap]);
    assert!(matches!(
        state.update_snapshot(&old_under_new_key, NOW),
        Err(TrustError::Rollback {
            role: Role::Snapshot,
            ..
        })
    ));
    // And the retired snapshot key is not trusted any more.
    let s10_old_key = sign_metadata(
        Role::Snapshot,
        &snapshot(10, NOW + DAY, &[]),
        &[&k.snapshot],
    );
    assert!(state.update_snapshot(&s10_old_key, NOW).is_err());
    assert_eq!(state.snapshot_version(&m()), 9);
}

#[test]
fn freeze_attack_with_expired_metadata_is_refused() {
    let k = keys();
    let mut state = trusted(&k);
    let stale = sign_metadata(Role::Snapshot, &snapshot(3, NOW - 1, &[]), &[&k.snapshot]);
    assert!(matches!(
        state.update_snapshot(&stale, NOW),
        Err(TrustError::Expired {
            role: Role::Snapshot,
            ..
        })
    ));
    assert_eq!(
        state.snapshot_version(&m()),
        0,
        "an expired snapshot moves nothing"
    );
    // An expired root stops everything until a newer root arrives.
    let all = [&k.root[0], &k.root[1], &k.root[2]];
    let mut old = root(2, &all, &[&k.publishers[0]], &k.snapshot);
    old.expires = NOW - DAY;
    state
        .update_root(&sign_metadata(Role::Root, &old, &all))
        .unwrap();
    let fresh = sign_metadata(Role::Snapshot, &snapshot(4, NOW + DAY, &[]), &[&k.snapshot]);
    assert!(matches!(
        state.update_snapshot(&fresh, NOW),
        Err(TrustError::Expired {
            role: Role::Root,
            ..
        })
    ));
}

#[test]
fn mix_and_match_attack_is_refused() {
    let k = keys();
    let mut state = trusted(&k);
    let listed = release("2.0.0", &k.publishers[0]);
    let other = release("3.0.0", &k.publishers[0]);
    let s = sign_metadata(
        Role::Snapshot,
        &snapshot(1, NOW + DAY, &[("2.0.0", &listed)]),
        &[&k.snapshot],
    );
    let snap = state.update_snapshot(&s, NOW).unwrap();
    // A validly signed release the snapshot does not list, or lists with other bytes.
    assert!(matches!(
        state.check_release(&snap, &m(), &v("3.0.0"), &other, NOW),
        Err(TrustError::MixAndMatch { .. })
    ));
    let mut resigned = release("2.0.0", &k.publishers[1]);
    resigned.truncate(listed.len());
    assert!(matches!(
        state.check_release(&snap, &m(), &v("2.0.0"), &resigned, NOW),
        Err(TrustError::MixAndMatch { .. })
    ));
    // The bytes of another version under this version's name.
    let s2 = sign_metadata(
        Role::Snapshot,
        &snapshot(2, NOW + DAY, &[("2.0.0", &other)]),
        &[&k.snapshot],
    );
    let snap2 = state.update_snapshot(&s2, NOW).unwrap();
    assert!(matches!(
        state.check_release(&snap2, &m(), &v("2.0.0"), &other, NOW),
        Err(TrustError::MixAndMatch { .. })
    ));
}

#[test]
fn endless_data_attack_is_refused() {
    let k = keys();
    let mut state = trusted(&k);
    let r = release("2.0.0", &k.publishers[0]);
    let s = sign_metadata(
        Role::Snapshot,
        &snapshot(1, NOW + DAY, &[("2.0.0", &r)]),
        &[&k.snapshot],
    );
    let snap = state.update_snapshot(&s, NOW).unwrap();
    let mut longer = r.clone();
    longer.extend(std::iter::repeat_n(0u8, 1 << 20));
    assert!(matches!(
        state.check_release(&snap, &m(), &v("2.0.0"), &longer, NOW),
        Err(TrustError::EndlessData { declared, .. }) if declared == r.len() as u64
    ));
    // Metadata itself is bounded before it is decoded.
    let huge = vec![0u8; MAX_METADATA_BYTES + 1];
    assert!(matches!(
        state.update_snapshot(&huge, NOW),
        Err(TrustError::Malformed { .. })
    ));
}

#[test]
fn a_publisher_key_revoked_by_root_no_longer_signs_releases() {
    let k = keys();
    let mut state = trusted(&k);
    let all = [&k.root[0], &k.root[1], &k.root[2]];
    // Root 2 drops publisher 11.
    let v2 = sign_metadata(
        Role::Root,
        &root(2, &all, &[&k.publishers[0]], &k.snapshot),
        &all,
    );
    state.update_root(&v2).unwrap();
    let by_revoked = release("2.0.0", &k.publishers[1]);
    let s = sign_metadata(
        Role::Snapshot,
        &snapshot(1, NOW + DAY, &[("2.0.0", &by_revoked)]),
        &[&k.snapshot],
    );
    let snap = state.update_snapshot(&s, NOW).unwrap();
    assert!(matches!(
        state.check_release(&snap, &m(), &v("2.0.0"), &by_revoked, NOW),
        Err(TrustError::BelowThreshold {
            role: Role::Targets,
            ..
        })
    ));
}

#[test]
fn an_offline_ceremony_signs_a_draft_one_key_at_a_time() {
    let k = keys();
    let next = root(
        2,
        &[&k.root[0], &k.root[1], &k.root[2]],
        &[&k.publishers[0]],
        &k.snapshot,
    );
    let mut bytes = draft(Role::Root, &next);
    for holder in [&k.root[0], &k.root[1], &k.root[0]] {
        bytes = add_signature(Role::Root, &bytes, holder).unwrap();
    }
    let (shown, valid) = inspect_root(&bytes).unwrap();
    assert_eq!(shown, next);
    assert_eq!(valid.len(), 2, "a key signing twice counts once");
    let mut state = trusted(&k);
    state.update_root(&bytes).unwrap();
    assert_eq!(state.root().version, 2);
}

#[test]
fn freeze_attack_with_an_expired_release_manifest_is_refused() {
    let k = keys();
    let mut state = trusted(&k);
    // The publisher's signature vouched for this release until NOW; a fresh snapshot from a
    // compromised online key cannot make it installable again.
    let stale = signed_release("2.0.0", &k.publishers[0], 1, NOW);
    let s = sign_metadata(
        Role::Snapshot,
        &snapshot(1, NOW + DAY, &[("2.0.0", &stale)]),
        &[&k.snapshot],
    );
    let snap = state.update_snapshot(&s, NOW).unwrap();
    assert!(matches!(
        state.check_release(&snap, &m(), &v("2.0.0"), &stale, NOW),
        Err(TrustError::Expired {
            role: Role::Targets,
            ..
        })
    ));
    // The same check without root metadata.
    let decoded = SignedRelease::verify(
        &stale,
        &crate::sign::Keyring::new([k.publishers[0].public()]),
    )
    .unwrap();
    assert!(check_release_fresh(&decoded.release, NOW - 1).is_ok());
    assert!(check_release_fresh(&decoded.release, NOW).is_err());
}

#[test]
fn rollback_attack_on_a_release_manifest_revision_is_refused() {
    let k = keys();
    let mut state = trusted(&k);
    // The publisher withdrew the release: revision 2 expires at once; revision 1 lived on.
    let first = signed_release("2.0.0", &k.publishers[0], 1, NOW + 365 * DAY);
    let withdrawn = signed_release("2.0.0", &k.publishers[0], 2, NOW);
    let listing = |version, envelope: &[u8]| {
        sign_metadata(
            Role::Snapshot,
            &snapshot(version, NOW + DAY, &[("2.0.0", envelope)]),
            &[&k.snapshot],
        )
    };
    let snap = state.update_snapshot(&listing(1, &withdrawn), NOW).unwrap();
    assert!(matches!(
        state.check_release(&snap, &m(), &v("2.0.0"), &withdrawn, NOW),
        Err(TrustError::Expired {
            role: Role::Targets,
            ..
        })
    ));
    assert_eq!(
        state.release_revision(&m(), &v("2.0.0")),
        Some(2),
        "a withdrawal is remembered though it is refused"
    );
    // The online key lists the older signing again: the device has seen revision 2.
    let snap = state.update_snapshot(&listing(2, &first), NOW).unwrap();
    assert!(matches!(
        state.check_release(&snap, &m(), &v("2.0.0"), &first, NOW),
        Err(TrustError::Rollback {
            role: Role::Targets,
            trusted: 2,
            got: 1
        })
    ));
    assert_eq!(state.release_revision(&m(), &v("2.0.0")), Some(2));
    // What a device remembers is bounded by the snapshot: unlisted releases are forgotten.
    let empty = sign_metadata(Role::Snapshot, &snapshot(3, NOW + DAY, &[]), &[&k.snapshot]);
    state.update_snapshot(&empty, NOW).unwrap();
    assert_eq!(state.release_revision(&m(), &v("2.0.0")), None);
}

#[test]
fn snapshots_are_per_model_and_so_is_their_rollback_check() {
    let k = keys();
    let mut state = trusted(&k);
    let other: ModelName = "other".parse().unwrap();
    let for_model = |model: &ModelName, version: u64| {
        let snap = Snapshot {
            version,
            expires: NOW + DAY,
            releases: BTreeMap::from([(model.clone(), BTreeMap::new())]),
        };
        sign_metadata(Role::Snapshot, &snap, &[&k.snapshot])
    };
    // The versions come from one counter across models: model m's snapshot was signed
    // after other's, and both are current.
    state.update_snapshot(&for_model(&m(), 10), NOW).unwrap();
    state.update_snapshot(&for_model(&other, 8), NOW).unwrap();
    assert_eq!(
        (state.snapshot_version(&m()), state.snapshot_version(&other)),
        (10, 8)
    );
    assert!(matches!(
        state.update_snapshot(&for_model(&m(), 9), NOW),
        Err(TrustError::Rollback {
            role: Role::Snapshot,
            trusted: 10,
            got: 9
        })
    ));
    // A snapshot listing both must be at least as new as each model's.
    let both = Snapshot {
        version: 9,
        expires: NOW + DAY,
        releases: BTreeMap::from([(m(), BTreeMap::new()), (other.clone(), BTreeMap::new())]),
    };
    assert!(
        state
            .update_snapshot(&sign_metadata(Role::Snapshot, &both, &[&k.snapshot]), NOW)
            .is_err()
    );
    assert_eq!(state.snapshot_version(&other), 8, "nothing moved");
}

#[test]
fn a_release_below_the_publisher_threshold_is_refused_and_duplicate_signatures_count_once() {
    let k = keys();
    let all = [&k.root[0], &k.root[1], &k.root[2]];
    let mut two_publishers = root(1, &all, &[&k.publishers[0], &k.publishers[1]], &k.snapshot);
    two_publishers.targets.threshold = 2;
    let release = |keys: &[&SecretKey]| {
        let one = SignedRelease::verify(
            &release("2.0.0", &k.publishers[0]),
            &crate::sign::Keyring::new([k.publishers[0].public()]),
        )
        .unwrap()
        .release;
        SignedRelease::sign_all(&one, keys).unwrap().envelope_bytes
    };
    assert!(matches!(
        verify_release(&two_publishers, &release(&[&k.publishers[0]])),
        Err(TrustError::BelowThreshold {
            role: Role::Targets,
            valid: 1,
            threshold: 2
        })
    ));
    assert!(matches!(
        verify_release(
            &two_publishers,
            &release(&[&k.publishers[0], &k.publishers[0]])
        ),
        Err(TrustError::BelowThreshold { valid: 1, .. })
    ));
    let both = verify_release(
        &two_publishers,
        &release(&[&k.publishers[0], &k.publishers[1]]),
    )
    .unwrap();
    assert_eq!(both.release.version, v("2.0.0"));
    assert!(
        SignedRelease::sign_all(&both.release, &[]).is_err(),
        "a release signed by nobody is an error"
    );
}

#[test]
fn a_state_saved_before_per_model_snapshots_keeps_its_snapshot_version_as_a_floor() {
    let k = keys();
    let state = trusted(&k);
    // The shape of a trust state saved by the previous agent: one snapshot version.
    let mut old = serde_json::to_value(&state).unwrap();
    let fields = old.as_object_mut().unwrap();
    fields.remove("snapshot_versions");
    fields.remove("snapshot_floor");
    fields.remove("revisions");
    fields.insert("snapshot_version".into(), 40.into());
    let mut migrated: TrustState = serde_json::from_value(old).unwrap();
    assert_eq!(migrated.snapshot_version(&m()), 40);
    let older = sign_metadata(
        Role::Snapshot,
        &snapshot(39, NOW + DAY, &[]),
        &[&k.snapshot],
    );
    assert!(matches!(
        migrated.update_snapshot(&older, NOW),
        Err(TrustError::Rollback { trusted: 40, .. })
    ));
    let newer = sign_metadata(
        Role::Snapshot,
        &snapshot(41, NOW + DAY, &[]),
        &[&k.snapshot],
    );
    migrated.update_snapshot(&newer, NOW).unwrap();
    assert_eq!(migrated.snapshot_version(&m()), 41);
}
