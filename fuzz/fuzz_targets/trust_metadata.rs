//! Trust metadata (roots, snapshots, release checks) on hostile bytes: a refusal, never a
//! panic, and never a change of what is trusted without a valid threshold of signatures.
#![no_main]

use ferry_shared::sign::SecretKey;
use ferry_shared::trust::{Role, RoleKeys, Root, Snapshot, TrustState, sign_metadata};
use libfuzzer_sys::fuzz_target;

/// The fixture state, built (and signed) once: signing per input would cost most of the run.
fn state() -> TrustState {
    static STATE: std::sync::OnceLock<TrustState> = std::sync::OnceLock::new();
    STATE.get_or_init(fixture).clone()
}

fn fixture() -> TrustState {
    let key = SecretKey::from_seed(&[7; 32]);
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

fuzz_target!(|data: &[u8]| {
    let _ = TrustState::from_initial_root(data);
    let mut s = state();
    assert!(s.update_root(data).is_err(), "unsigned bytes became a root");
    assert!(s.update_snapshot(data, 0).is_err(), "unsigned bytes became a snapshot");
    let empty = Snapshot {
        version: 1,
        expires: u64::MAX,
        releases: Default::default(),
    };
    let name = "m".parse().unwrap_or_else(|_| unreachable!());
    let version = "1.0.0".parse().unwrap_or_else(|_| unreachable!());
    assert!(s.check_release(&empty, &name, &version, data, 0).is_err());
});
