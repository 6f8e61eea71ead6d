//! The on-disk layout of installed versions and the atomic switch between them.
//!
//! ```text
//! STATE/versions/MODEL/VERSION/   complete, verified versions (appear only by rename)
//! STATE/staging/MODEL/VERSION/    downloads in progress (kept across restarts to resume)
//! STATE/models/MODEL/current  ->  ../../versions/MODEL/VERSION
//! STATE/models/MODEL/previous ->  ../../versions/MODEL/VERSION
//! STATE/models/MODEL/candidate -> ../../versions/MODEL/VERSION   (shadow waves only)
//! STATE/models/MODEL/switch.journal
//! STATE/models/MODEL/metrics.json                                 (see `metrics`)
//! ```
//!
//! `candidate` names a version staged beside `current` during a shadow rollout wave: the
//! application may load it and run it on the same inputs, but nothing serves it, no switch
//! touches it and a rollback never returns to it. Garbage collection keeps every version a
//! link (or an unfinished switch's journal) names.
//!
//! A switch changes two links, which no single syscall can do, so it first writes a journal
//! naming the slots before and after, then flips each link by rename. At start,
//! [`SlotLayout::reconcile`] finishes or undoes whatever a crash interrupted: a plain switch is
//! rolled forward, a switch still in probation (health check not yet passed) is rolled back,
//! as RAUC and Mender treat an unconfirmed boot. Versions that no slot or journal names are
//! removed only after that.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ferry_shared::{ModelName, Version};
use serde::{Deserialize, Serialize};

use crate::access::{create_shared_dir, share_tree};
use crate::fsutil::{fsync_dir, remove_tree, set_link, write_atomic};
use crate::updater::Slots;

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    before: Slots,
    after: Slots,
    probation: bool,
}

/// What start-up reconciliation found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// The slots now.
    pub slots: Slots,
    /// A version whose probation a crash interrupted; it was rolled back.
    pub interrupted: Option<Version>,
    /// What was cleaned up (for the log).
    pub removed: Vec<String>,
}

/// Slot failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlotError {
    /// File-system failure.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The version to switch to is not installed.
    #[error("{model} {version} is not installed")]
    NotInstalled {
        /// The model whose slots these are.
        model: String,
        /// The version the operation concerned.
        version: Version,
    },
    /// There is no previous version to return to.
    #[error("{model} has no previous version on this device to roll back to")]
    NoPrevious {
        /// The model whose slots these are.
        model: String,
    },
    /// An install is between switch and confirmation.
    #[error("{model} {version} is being health-checked; try again when the update has settled")]
    Busy {
        /// The model whose slots these are.
        model: String,
        /// Version in probation.
        version: Version,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> SlotError + '_ {
    move |source| SlotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The agent's state directory.
#[derive(Clone, Debug)]
pub struct SlotLayout {
    root: PathBuf,
}

/// Crash injection for tests: the number of durable steps a switch may take before "dying".
const NO_CRASH: usize = usize::MAX;

impl SlotLayout {
    /// The layout under `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The state directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the versions of a model live.
    pub fn versions_dir(&self, model: &ModelName) -> PathBuf {
        self.root.join("versions").join(model.as_str())
    }

    /// Where one installed version lives.
    pub fn version_dir(&self, model: &ModelName, version: &Version) -> PathBuf {
        self.versions_dir(model).join(version.to_string())
    }

    /// Where a version is assembled before it is complete.
    pub fn staging_dir(&self, model: &ModelName, version: &Version) -> PathBuf {
        self.root
            .join("staging")
            .join(model.as_str())
            .join(version.to_string())
    }

    /// The directory holding a model's links.
    pub fn model_dir(&self, model: &ModelName) -> PathBuf {
        self.root.join("models").join(model.as_str())
    }

    /// The `current` link: what applications load.
    pub fn current_link(&self, model: &ModelName) -> PathBuf {
        self.model_dir(model).join("current")
    }

    fn previous_link(&self, model: &ModelName) -> PathBuf {
        self.model_dir(model).join("previous")
    }

    /// The `candidate` link: a version staged for shadow traffic.
    pub fn candidate_link(&self, model: &ModelName) -> PathBuf {
        self.model_dir(model).join("candidate")
    }

    /// Where the daemon keeps the model metrics the application reported.
    pub fn metrics_path(&self, model: &ModelName) -> PathBuf {
        self.model_dir(model).join("metrics.json")
    }

    fn journal_path(&self, model: &ModelName) -> PathBuf {
        self.model_dir(model).join("switch.journal")
    }

    /// True when a complete version is on disk.
    pub fn is_installed(&self, model: &ModelName, version: &Version) -> bool {
        self.version_dir(model, version).is_dir()
    }

    /// Every complete version on disk, oldest first.
    pub fn installed(&self, model: &ModelName) -> Result<Vec<Version>, SlotError> {
        let dir = self.versions_dir(model);
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_at(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_at(&dir))?;
            if let Some(v) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                out.push(v);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Reads the links.
    pub fn slots(&self, model: &ModelName) -> Result<Slots, SlotError> {
        Ok(Slots {
            current: self.read_link(model, &self.current_link(model))?,
            previous: self.read_link(model, &self.previous_link(model))?,
        })
    }

    fn read_link(&self, model: &ModelName, link: &Path) -> Result<Option<Version>, SlotError> {
        match fs::read_link(link) {
            Ok(target) => Ok(target
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
                .filter(|v| self.is_installed(model, v))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(link)(e)),
        }
    }

    /// The version the `candidate` link names, if complete on disk.
    pub fn candidate(&self, model: &ModelName) -> Result<Option<Version>, SlotError> {
        self.read_link(model, &self.candidate_link(model))
    }

    /// Points `candidate` at the installed `version`, or removes the link; then removes the
    /// versions no link names any more.
    pub fn set_candidate(
        &self,
        model: &ModelName,
        version: Option<&Version>,
    ) -> Result<(), SlotError> {
        if let Some(version) = version
            && !self.is_installed(model, version)
        {
            return Err(SlotError::NotInstalled {
                model: model.to_string(),
                version: version.clone(),
            });
        }
        let dir = self.model_dir(model);
        create_shared_dir(&self.root, &dir).map_err(io_at(&dir))?;
        let link = self.candidate_link(model);
        set_link(&link, version.map(|v| link_target(model, v)).as_deref()).map_err(io_at(&link))?;
        fsync_dir(&dir).map_err(io_at(&dir))?;
        let slots = self.slots(model)?;
        self.collect_garbage(model, &[&slots])?;
        Ok(())
    }

    /// The version in probation, if a switch awaits confirmation.
    pub fn in_probation(&self, model: &ModelName) -> Result<Option<Version>, SlotError> {
        Ok(self
            .read_journal(model)?
            .filter(|j| j.probation)
            .and_then(|j| j.after.current))
    }

    fn read_journal(&self, model: &ModelName) -> Result<Option<Journal>, SlotError> {
        let path = self.journal_path(model);
        match fs::read(&path) {
            // The journal is written by rename, so unreadable content means outside damage;
            // ignoring it leaves the links, which are always valid on their own.
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    /// Moves a complete, verified staging directory into the installed versions.
    pub fn promote(&self, model: &ModelName, version: &Version) -> Result<(), SlotError> {
        let from = self.staging_dir(model, version);
        let to = self.version_dir(model, version);
        let dir = self.versions_dir(model);
        create_shared_dir(&self.root, &dir).map_err(io_at(&dir))?;
        share_tree(&from).map_err(io_at(&from))?;
        remove_tree(&to).map_err(io_at(&to))?;
        fs::rename(&from, &to).map_err(io_at(&to))?;
        fsync_dir(&dir).map_err(io_at(&dir))
    }

    /// Makes `to` current and the old current previous. With `probation`, the switch stays
    /// journaled until [`SlotLayout::commit`] or [`SlotLayout::abort_probation`]; a crash before
    /// either
    /// rolls it back at start.
    pub fn switch(
        &self,
        model: &ModelName,
        to: &Version,
        probation: bool,
    ) -> Result<Slots, SlotError> {
        self.switch_steps(model, to, probation, NO_CRASH)
    }

    fn switch_steps(
        &self,
        model: &ModelName,
        to: &Version,
        probation: bool,
        mut steps: usize,
    ) -> Result<Slots, SlotError> {
        let mut step = || {
            steps = steps.saturating_sub(1);
            steps == 0
        };
        crate::space::make_room(&self.root);
        if let Some(version) = self.in_probation(model)? {
            return Err(SlotError::Busy {
                model: model.to_string(),
                version,
            });
        }
        if !self.is_installed(model, to) {
            return Err(SlotError::NotInstalled {
                model: model.to_string(),
                version: to.clone(),
            });
        }
        let dir = self.model_dir(model);
        create_shared_dir(&self.root, &dir).map_err(io_at(&dir))?;
        let before = self.slots(model)?;
        let after = if before.current.as_ref() == Some(to) {
            before.clone()
        } else {
            Slots {
                current: Some(to.clone()),
                previous: before.current.clone(),
            }
        };
        let journal = Journal {
            before,
            after: after.clone(),
            probation,
        };
        let journal_path = self.journal_path(model);
        let bytes =
            serde_json::to_vec(&journal).map_err(|e| io_at(&journal_path)(io::Error::other(e)))?;
        write_atomic(&journal_path, &bytes).map_err(io_at(&journal_path))?;
        if step() {
            return Ok(after);
        }
        self.apply(model, &after, &mut step)?;
        if step() || probation {
            return Ok(after);
        }
        fs::remove_file(&journal_path).map_err(io_at(&journal_path))?;
        fsync_dir(&dir).map_err(io_at(&dir))?;
        Ok(after)
    }

    /// Sets both links, `previous` first, then fsyncs the model directory.
    fn apply(
        &self,
        model: &ModelName,
        slots: &Slots,
        crash: &mut dyn FnMut() -> bool,
    ) -> Result<(), SlotError> {
        let target = |v: &Option<Version>| v.as_ref().map(|v| link_target(model, v));
        let previous = self.previous_link(model);
        set_link(&previous, target(&slots.previous).as_deref()).map_err(io_at(&previous))?;
        if crash() {
            return Ok(());
        }
        let current = self.current_link(model);
        set_link(&current, target(&slots.current).as_deref()).map_err(io_at(&current))?;
        if crash() {
            return Ok(());
        }
        let dir = self.model_dir(model);
        fsync_dir(&dir).map_err(io_at(&dir))
    }

    /// Confirms a switch in probation and removes versions no slot names any more.
    pub fn commit(&self, model: &ModelName) -> Result<Slots, SlotError> {
        let journal_path = self.journal_path(model);
        if journal_path.exists() {
            fs::remove_file(&journal_path).map_err(io_at(&journal_path))?;
            let dir = self.model_dir(model);
            fsync_dir(&dir).map_err(io_at(&dir))?;
        }
        let slots = self.slots(model)?;
        self.collect_garbage(model, &[&slots])?;
        Ok(slots)
    }

    /// Undoes a switch in probation: the slots return to what they were before it.
    pub fn abort_probation(&self, model: &ModelName) -> Result<Slots, SlotError> {
        let Some(journal) = self.read_journal(model)? else {
            return self.slots(model);
        };
        crate::space::make_room(&self.root);
        self.apply(model, &journal.before, &mut || false)?;
        let journal_path = self.journal_path(model);
        fs::remove_file(&journal_path).map_err(io_at(&journal_path))?;
        let dir = self.model_dir(model);
        fsync_dir(&dir).map_err(io_at(&dir))?;
        self.collect_garbage(model, &[&journal.before])?;
        Ok(journal.before)
    }

    /// Brings the directory to a consistent state after any crash; see the module docs.
    pub fn reconcile(&self, model: &ModelName) -> Result<Reconciled, SlotError> {
        self.reconcile_keeping(model, false)
    }

    /// [`SlotLayout::reconcile`], but with `keep_probation` a switch in probation stays in
    /// probation (its links set as after the switch, its journal kept) for a later
    /// [`SlotLayout::commit`] or [`SlotLayout::abort_probation`]: the agent's own binary, whose
    /// probation spans the restart into the new binary (see `handover`).
    pub fn reconcile_keeping(
        &self,
        model: &ModelName,
        keep_probation: bool,
    ) -> Result<Reconciled, SlotError> {
        // Unfinished downloads stay: the next attempt resumes from their verified chunks
        // (and the one after a change of target removes them).
        let mut removed = Vec::new();
        for dir in [self.versions_dir(model), self.model_dir(model)] {
            create_shared_dir(&self.root, &dir).map_err(io_at(&dir))?;
        }
        // Versions an earlier build installed for the agent alone become readable by the
        // model server's group (see `access`).
        let versions = self.versions_dir(model);
        share_tree(&versions).map_err(io_at(&versions))?;
        let mut interrupted = None;
        let journal_path = self.journal_path(model);
        let mut journal_kept = false;
        if journal_path.exists() {
            match self.read_journal(model)? {
                Some(j) if j.probation && keep_probation => {
                    self.apply(model, &j.after, &mut || false)?;
                    journal_kept = true;
                }
                Some(j) if j.probation => {
                    self.apply(model, &j.before, &mut || false)?;
                    if j.after.current != j.before.current {
                        interrupted = j.after.current.clone();
                        removed.push(format!(
                            "interrupted probation of {}; restored {}",
                            j.after
                                .current
                                .as_ref()
                                .map_or("-".into(), ToString::to_string),
                            j.before
                                .current
                                .as_ref()
                                .map_or("nothing".into(), ToString::to_string)
                        ));
                    }
                }
                Some(j) => self.apply(model, &j.after, &mut || false)?,
                None => removed.push("unreadable switch journal".into()),
            }
            if !journal_kept {
                fs::remove_file(&journal_path).map_err(io_at(&journal_path))?;
            }
        }
        for leftover in ["current.new", "previous.new", "switch.tmp"] {
            let path = self.model_dir(model).join(leftover);
            if fs::symlink_metadata(&path).is_ok() {
                fs::remove_file(&path).map_err(io_at(&path))?;
            }
        }
        // Links that name nothing complete are dropped; `current` is never left empty while a
        // complete previous version exists.
        let mut slots = self.slots(model)?;
        if slots.current.is_none() && slots.previous.is_some() {
            slots.current = slots.previous.take();
            removed.push("current named no complete version; previous made current".into());
        }
        self.apply(model, &slots, &mut || false)?;
        let candidate = self.candidate_link(model);
        if fs::symlink_metadata(&candidate).is_ok() && self.candidate(model)?.is_none() {
            fs::remove_file(&candidate).map_err(io_at(&candidate))?;
            removed.push("candidate named no complete version".into());
        }
        removed.extend(self.collect_garbage(model, &[&slots])?);
        Ok(Reconciled {
            slots,
            interrupted,
            removed,
        })
    }

    /// Removes installed versions that none of `keep`, the `candidate` link nor an unfinished
    /// switch names.
    fn collect_garbage(
        &self,
        model: &ModelName,
        keep: &[&Slots],
    ) -> Result<Vec<String>, SlotError> {
        let mut removed = Vec::new();
        let candidate = self.candidate(model)?;
        let journal = self.read_journal(model)?;
        let journaled = journal.iter().flat_map(|j| [&j.before, &j.after]);
        let keep: Vec<&Slots> = keep.iter().copied().chain(journaled).collect();
        for version in self.installed(model)? {
            let kept = candidate.as_ref() == Some(&version)
                || keep.iter().any(|s| {
                    s.current.as_ref() == Some(&version) || s.previous.as_ref() == Some(&version)
                });
            if !kept {
                let dir = self.version_dir(model, &version);
                remove_tree(&dir).map_err(io_at(&dir))?;
                removed.push(format!("old version {version}"));
            }
        }
        let dir = self.versions_dir(model);
        if !removed.is_empty() {
            fsync_dir(&dir).map_err(io_at(&dir))?;
        }
        Ok(removed)
    }

    /// The file of the installed `version`, from its manifest's variant file name.
    pub fn artifact_path(&self, model: &ModelName, version: &Version, file: &str) -> PathBuf {
        self.version_dir(model, version).join(file)
    }
}

/// Where a link to `version` points, relative to the model directory.
fn link_target(model: &ModelName, version: &Version) -> PathBuf {
    Path::new("../../versions")
        .join(model.as_str())
        .join(version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelName {
        "m".parse().unwrap()
    }

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    fn install(layout: &SlotLayout, version: &str) {
        let staging = layout.staging_dir(&model(), &v(version));
        fs::create_dir_all(&staging).unwrap();
        fs::write(staging.join("model.bin"), version).unwrap();
        layout.promote(&model(), &v(version)).unwrap();
    }

    fn slots(current: Option<&str>, previous: Option<&str>) -> Slots {
        Slots {
            current: current.map(v),
            previous: previous.map(v),
        }
    }

    /// A layout with v1 previous and v2 current.
    fn two_versions() -> (tempfile::TempDir, SlotLayout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = SlotLayout::new(dir.path().to_owned());
        layout.reconcile(&model()).unwrap();
        install(&layout, "1.0.0");
        layout.switch(&model(), &v("1.0.0"), false).unwrap();
        install(&layout, "2.0.0");
        layout.switch(&model(), &v("2.0.0"), false).unwrap();
        (dir, layout)
    }

    #[test]
    fn a_confirmed_switch_keeps_exactly_current_and_previous() {
        let (_dir, layout) = two_versions();
        install(&layout, "3.0.0");
        let after = layout.switch(&model(), &v("3.0.0"), true).unwrap();
        assert_eq!(after, slots(Some("3.0.0"), Some("2.0.0")));
        assert_eq!(
            layout.installed(&model()).unwrap().len(),
            3,
            "v1 stays until confirmed"
        );
        layout.commit(&model()).unwrap();
        assert_eq!(
            layout.installed(&model()).unwrap(),
            vec![v("2.0.0"), v("3.0.0")]
        );
        let file = fs::read_to_string(layout.current_link(&model()).join("model.bin")).unwrap();
        assert_eq!(file, "3.0.0");
    }

    #[test]
    fn an_aborted_probation_restores_the_slots_exactly() {
        let (_dir, layout) = two_versions();
        install(&layout, "3.0.0");
        layout.switch(&model(), &v("3.0.0"), true).unwrap();
        assert!(matches!(
            layout.switch(&model(), &v("2.0.0"), false),
            Err(SlotError::Busy { .. })
        ));
        let restored = layout.abort_probation(&model()).unwrap();
        assert_eq!(restored, slots(Some("2.0.0"), Some("1.0.0")));
        assert_eq!(layout.slots(&model()).unwrap(), restored);
        assert!(
            !layout.is_installed(&model(), &v("3.0.0")),
            "the failed version is removed"
        );
    }

    #[test]
    fn a_probation_kept_across_a_restart_can_still_be_confirmed_or_undone() {
        for confirm in [true, false] {
            let (_dir, layout) = two_versions();
            install(&layout, "3.0.0");
            layout.switch(&model(), &v("3.0.0"), true).unwrap();
            let r = layout.reconcile_keeping(&model(), true).unwrap();
            assert_eq!(r.slots, slots(Some("3.0.0"), Some("2.0.0")));
            assert_eq!(r.interrupted, None);
            assert_eq!(layout.in_probation(&model()).unwrap(), Some(v("3.0.0")));
            assert!(
                layout.is_installed(&model(), &v("1.0.0")),
                "the journal names it"
            );
            let end = if confirm {
                layout.commit(&model()).unwrap()
            } else {
                layout.abort_probation(&model()).unwrap()
            };
            let expected = if confirm {
                slots(Some("3.0.0"), Some("2.0.0"))
            } else {
                slots(Some("2.0.0"), Some("1.0.0"))
            };
            assert_eq!(end, expected);
            assert_eq!(layout.in_probation(&model()).unwrap(), None);
            // A plain reconciliation after either changes nothing.
            assert_eq!(layout.reconcile(&model()).unwrap().slots, expected);
        }
    }

    #[test]
    fn rollback_flips_current_and_previous() {
        let (_dir, layout) = two_versions();
        let after = layout.switch(&model(), &v("1.0.0"), false).unwrap();
        assert_eq!(after, slots(Some("1.0.0"), Some("2.0.0")));
        assert_eq!(
            layout.installed(&model()).unwrap().len(),
            2,
            "nothing is lost"
        );
    }

    #[test]
    fn every_crash_point_of_a_plain_switch_rolls_forward_to_a_valid_state() {
        for crash_after in 1..=5 {
            let (_dir, layout) = two_versions();
            layout
                .switch_steps(&model(), &v("1.0.0"), false, crash_after)
                .unwrap();
            let r = layout.reconcile(&model()).unwrap();
            assert_eq!(
                r.slots,
                slots(Some("1.0.0"), Some("2.0.0")),
                "crash after step {crash_after}"
            );
            assert_eq!(layout.slots(&model()).unwrap(), r.slots);
            assert_eq!(layout.installed(&model()).unwrap().len(), 2);
        }
    }

    #[test]
    fn every_crash_point_of_a_probation_switch_comes_back_on_the_old_version() {
        for crash_after in 1..=5 {
            let (_dir, layout) = two_versions();
            install(&layout, "3.0.0");
            layout
                .switch_steps(&model(), &v("3.0.0"), true, crash_after)
                .unwrap();
            let r = layout.reconcile(&model()).unwrap();
            assert_eq!(
                r.slots,
                slots(Some("2.0.0"), Some("1.0.0")),
                "crash after step {crash_after}"
            );
            assert_eq!(r.interrupted, Some(v("3.0.0")));
            assert_eq!(
                layout.installed(&model()).unwrap(),
                vec![v("1.0.0"), v("2.0.0")]
            );
            assert!(!layout.model_dir(&model()).join("switch.journal").exists());
        }
    }

    #[test]
    fn reconcile_keeps_unfinished_downloads_and_removes_unreferenced_versions() {
        let (_dir, layout) = two_versions();
        let partial = layout.staging_dir(&model(), &v("4.0.0"));
        fs::create_dir_all(&partial).unwrap();
        fs::write(partial.join("model.bin"), "half").unwrap();
        install(&layout, "3.0.0"); // complete but never switched to
        let r = layout.reconcile(&model()).unwrap();
        assert_eq!(r.slots, slots(Some("2.0.0"), Some("1.0.0")));
        assert!(partial.join("model.bin").exists(), "kept to resume");
        assert_eq!(
            layout.installed(&model()).unwrap(),
            vec![v("1.0.0"), v("2.0.0")]
        );
    }

    #[test]
    fn a_dangling_current_falls_back_to_previous() {
        let (_dir, layout) = two_versions();
        fs::remove_dir_all(layout.version_dir(&model(), &v("2.0.0"))).unwrap();
        let r = layout.reconcile(&model()).unwrap();
        assert_eq!(r.slots, slots(Some("1.0.0"), None));
    }

    #[test]
    fn a_candidate_survives_switches_and_clearing_it_removes_it() {
        let (_dir, layout) = two_versions();
        assert!(matches!(
            layout.set_candidate(&model(), Some(&v("3.0.0"))),
            Err(SlotError::NotInstalled { .. })
        ));
        install(&layout, "3.0.0");
        layout.set_candidate(&model(), Some(&v("3.0.0"))).unwrap();
        assert_eq!(layout.candidate(&model()).unwrap(), Some(v("3.0.0")));
        assert_eq!(
            layout.slots(&model()).unwrap(),
            slots(Some("2.0.0"), Some("1.0.0")),
            "staging a candidate switches nothing"
        );
        let file = fs::read_to_string(layout.candidate_link(&model()).join("model.bin")).unwrap();
        assert_eq!(file, "3.0.0");
        // A confirmed switch and a restart keep the candidate.
        install(&layout, "4.0.0");
        layout.switch(&model(), &v("4.0.0"), true).unwrap();
        layout.commit(&model()).unwrap();
        layout.reconcile(&model()).unwrap();
        assert_eq!(
            layout.installed(&model()).unwrap(),
            vec![v("2.0.0"), v("3.0.0"), v("4.0.0")]
        );
        layout.set_candidate(&model(), None).unwrap();
        assert!(fs::symlink_metadata(layout.candidate_link(&model())).is_err());
        assert_eq!(
            layout.installed(&model()).unwrap(),
            vec![v("2.0.0"), v("4.0.0")],
            "the cleared candidate is removed"
        );
    }

    #[test]
    fn a_candidate_that_became_current_stays_when_the_link_goes() {
        let (_dir, layout) = two_versions();
        install(&layout, "3.0.0");
        layout.set_candidate(&model(), Some(&v("3.0.0"))).unwrap();
        layout.switch(&model(), &v("3.0.0"), true).unwrap();
        layout.commit(&model()).unwrap();
        layout.set_candidate(&model(), None).unwrap();
        assert_eq!(
            layout.installed(&model()).unwrap(),
            vec![v("2.0.0"), v("3.0.0")]
        );
    }

    #[test]
    fn a_dangling_candidate_is_dropped_at_start() {
        let (_dir, layout) = two_versions();
        install(&layout, "3.0.0");
        layout.set_candidate(&model(), Some(&v("3.0.0"))).unwrap();
        fs::remove_dir_all(layout.version_dir(&model(), &v("3.0.0"))).unwrap();
        let r = layout.reconcile(&model()).unwrap();
        assert!(r.removed.iter().any(|n| n.contains("candidate")), "{r:?}");
        assert!(fs::symlink_metadata(layout.candidate_link(&model())).is_err());
        assert_eq!(r.slots, slots(Some("2.0.0"), Some("1.0.0")));
    }
}
