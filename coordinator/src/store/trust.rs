//! The root metadata chain the coordinator serves: root 1 first, each next one accepted only
//! as a device would accept it (both thresholds, exactly the next version, not expired), and
//! only when it names this coordinator's snapshot key, so the snapshots it signs will verify.

use ferry_shared::PublicKey;
use ferry_shared::trust::{TrustState, inspect_root};

use super::audit::{Change, append};
use super::engine::{Rows, WriteTxn};
use super::tables::{TRUST_META, TRUST_ROOTS};
use super::{Store, StoreError};

impl Store {
    /// Every stored root, oldest first, as signed.
    pub fn roots(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        roots_in(&self.read()?)
    }

    /// Adds `bytes` as the next root; `Ok(Err(why))` when a device would refuse it or this
    /// coordinator could not sign snapshots under it. Returns the new version.
    pub fn push_root(
        &self,
        bytes: &[u8],
        snapshot_key: &PublicKey,
        actor: &str,
        now: u64,
    ) -> Result<Result<u64, String>, StoreError> {
        // The chain is read in the transaction that extends it: two coordinators pushing at
        // once cannot both take the same next version.
        let txn = self.write()?;
        let chain = roots_in(&txn)?;
        let walked = match chain.split_first() {
            None => TrustState::from_initial_root(bytes).and_then(|state| {
                if state.root().version == 1 {
                    Ok(state)
                } else {
                    Err(ferry_shared::trust::TrustError::Rollback {
                        role: ferry_shared::trust::Role::Root,
                        trusted: 0,
                        got: state.root().version,
                    })
                }
            }),
            Some((first, rest)) => TrustState::from_initial_root(first).and_then(|mut state| {
                for root in rest {
                    state.update_root(root)?;
                }
                state.update_root(bytes)?;
                Ok(state)
            }),
        };
        let state = match walked {
            Ok(state) => state,
            Err(e) => return Ok(Err(e.to_string())),
        };
        if let Err(e) = state.check_root_fresh(now) {
            return Ok(Err(e.to_string()));
        }
        let root = state.root();
        if !root.snapshot.keys.contains(&snapshot_key.key_id()) {
            return Ok(Err(format!(
                "root {} does not name this coordinator's snapshot key {} ({snapshot_key})",
                root.version,
                snapshot_key.key_id()
            )));
        }
        let version = root.version;
        let (_, signers) = inspect_root(bytes).map_err(|e| StoreError::Corrupt {
            table: "trust_roots",
            key: version.to_string(),
            reason: e,
        })?;
        txn.insert_raw(TRUST_ROOTS, version, bytes)?;
        append(
            &txn,
            Change {
                at: now,
                actor,
                action: "trust.root",
                subject: format!("root {version}"),
                detail: format!(
                    "expires {}; root {} of {}, publishers {} of {}; signed by {}",
                    root.expires,
                    root.root.threshold,
                    root.root.keys.len(),
                    root.targets.threshold,
                    root.targets.keys.len(),
                    signers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        )?;
        txn.commit()?;
        Ok(Ok(version))
    }
}

impl Store {
    /// The next snapshot version: one above the last handed out, durably, so versions only
    /// grow across restarts.
    pub fn next_snapshot_version(&self) -> Result<u64, StoreError> {
        let txn = self.write()?;
        let next = next_snapshot_version_in(&txn)?;
        txn.commit()?;
        Ok(next)
    }
}

/// Every stored root in `txn`, oldest first.
fn roots_in(txn: &impl Rows) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    txn.scan_raw(TRUST_ROOTS, None, |_, value| {
        out.push(value.to_vec());
        Ok(true)
    })?;
    Ok(out)
}

/// Takes the next snapshot version (one counter for every model) within `txn`: the
/// version never repeats, as writes are one at a time, and it is kept only if `txn` commits.
pub(crate) fn next_snapshot_version_in(txn: &WriteTxn<'_>) -> Result<u64, StoreError> {
    let next = txn.counter(TRUST_META, "snapshot_version")?.unwrap_or(0) + 1;
    txn.set_counter(TRUST_META, "snapshot_version", next)?;
    Ok(next)
}
