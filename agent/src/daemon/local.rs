//! What the daemon sees of an operator's local changes (`ferry-agent rollback`): the slots and
//! the holds, read together under the state lock.

use ferry_shared::ModelName;

use crate::slots::SlotLayout;
use crate::state::StateFile;
use crate::updater::Hold;
use crate::updater::Slots;

/// The slots of `model` and its holds, read under the state lock. An operator's rollback
/// switches the links and then writes its hold, both under that lock: read without it, the
/// daemon could see the switch without the hold and switch straight back to the version just
/// rolled back from (CI saw it, with the agent under qemu). `None` when either cannot be
/// read.
pub(super) fn observe(
    layout: &SlotLayout,
    state: &StateFile,
    model: &ModelName,
) -> Option<(Slots, Vec<Hold>)> {
    let _lock = state.lock().ok()?;
    let slots = layout.slots(model).ok()?;
    let holds = state
        .load()
        .ok()
        .and_then(|s| s.models.get(model).map(|m| m.holds.clone()))
        .unwrap_or_default();
    Some((slots, holds))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A daemon looking while an operator's rollback had switched the links but not yet
    /// written its hold saw the rollback without the hold, and switched back.
    #[test]
    fn a_local_rollback_is_never_seen_without_its_hold() {
        let dir = tempfile::tempdir().unwrap();
        let layout = SlotLayout::new(dir.path().to_owned());
        let state = StateFile::new(dir.path());
        let model: ModelName = "m".parse().unwrap();
        layout.reconcile(&model).unwrap();
        for version in ["1.0.0", "2.0.0"] {
            let version = version.parse().unwrap();
            let staging = layout.staging_dir(&model, &version);
            std::fs::create_dir_all(&staging).unwrap();
            std::fs::write(staging.join("model.bin"), b"bytes").unwrap();
            layout.promote(&model, &version).unwrap();
            layout.switch(&model, &version, false).unwrap();
        }
        let (from, to) = ("2.0.0".parse().unwrap(), "1.0.0".parse().unwrap());

        // The rollback, halfway: links switched, hold not written yet, lock held.
        let lock = state.lock().unwrap();
        layout.switch(&model, &to, false).unwrap();
        let (seen_tx, seen) = std::sync::mpsc::channel();
        let looker = {
            let (dir, model) = (dir.path().to_owned(), model.clone());
            std::thread::spawn(move || {
                let seen = observe(&SlotLayout::new(dir.clone()), &StateFile::new(&dir), &model);
                let _ = seen_tx.send(seen);
            })
        };
        let early = seen.recv_timeout(Duration::from_millis(300)).ok();
        state
            .update_locked(|s| {
                s.model(&model).holds.push(Hold {
                    version: from,
                    reason: "rolled back locally".into(),
                });
            })
            .unwrap();
        drop(lock);
        let (slots, holds) = early
            .unwrap_or_else(|| seen.recv().ok().flatten())
            .expect("slots and holds read");
        looker.join().unwrap();
        assert_eq!(slots.current, Some(to));
        assert_eq!(holds.len(), 1, "the switch is seen with its hold");
    }
}
