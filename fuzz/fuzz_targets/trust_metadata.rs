//! Trust metadata (roots, snapshots, release checks) on hostile bytes: a refusal, never a
//! panic, and never a change of what is trusted unless the fixture key really signed the
//! document (checked independently of the code under test). The seeds are documents the
//! fixture key signed, so the fuzzer starts past the signature checks and mutates from there.
#![no_main]

use ferry_shared::Digest;
use ferry_shared::sign::{Envelope, SecretKey};
use ferry_shared::trust::{Role, RoleKeys, Root, Snapshot, TrustState, sign_metadata};
use libfuzzer_sys::fuzz_target;

fn key() -> SecretKey {
    SecretKey::from_seed(&[7; 32])
}

/// The fixture state, built (and signed) once: signing per input would cost most of the run.
fn state() -> TrustState {
    static STATE: std::sync::OnceLock<TrustState> = std::sync::OnceLock::new();
    STATE.get_or_init(fixture).clone()
}

fn fixture() -> TrustState {
    let key = key();
    let id = key.public().key_id();
    let role = RoleKeys {
        keys: [id].into(),
        threshold: 1,
    };
    let root = Root {
        version: 1,
        expires: u64::MAX,
        keys: [(id, key.public())].into(),
        root: role.clone(),
        targets: role.clone(),
        snapshot: role,
    };
    match TrustState::from_initial_root(&sign_metadata(Role::Root, &root, &[&key])) {
        Ok(s) => s,
        Err(e) => panic!("fixture root refused: {e}"),
    }
}

/// The oracle: `data` is, in its one encoding, a document whose payload the fixture key
/// signed for `role`.
fn signed_by_fixture(role: Role, data: &[u8]) -> bool {
    let public = key().public();
    Envelope::from_bytes(data).is_ok_and(|e| {
        e.to_bytes() == data
            && Digest::of(&e.payload) == e.payload_digest
            && e.signatures.iter().any(|s| {
                s.key_id == public.key_id()
                    && public.verify(role.context(), &e.payload_digest.0, &s.signature)
            })
    })
}

fuzz_target!(|data: &[u8]| {
    if TrustState::from_initial_root(data).is_ok() {
        assert!(
            signed_by_fixture(Role::Root, data),
            "an unsigned initial root"
        );
    }
    let mut s = state();
    if s.update_root(data).is_ok() {
        assert!(signed_by_fixture(Role::Root, data), "an unsigned root");
    }
    let mut s = state();
    if s.update_snapshot(data, 0).is_ok() {
        assert!(
            signed_by_fixture(Role::Snapshot, data),
            "an unsigned snapshot"
        );
    }
    let empty = Snapshot {
        version: 1,
        expires: u64::MAX,
        releases: Default::default(),
    };
    let name = "m".parse().unwrap_or_else(|_| unreachable!());
    let version = "1.0.0".parse().unwrap_or_else(|_| unreachable!());
    assert!(s.check_release(&empty, &name, &version, data, 0).is_err());
});
