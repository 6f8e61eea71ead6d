//! Update sets: models on one device that switch as one (`[[update_sets]]`). Pure: the
//! daemon describes where each member's [`Updater`](super::Updater) stands ([`Stage`]) and
//! whether its own gate (windows, the application's lock) lets it switch; [`judge`] says
//! which members may switch now, which one the others wait for, and whether the set commits
//! or rolls back.
//!
//! A set is a transaction over its members' switches:
//!
//! - It starts only when every member that has something to switch has it downloaded and
//!   verified, and may switch by its own gate: a set never stands half-switched for the
//!   length of a download or a closed window.
//! - `together`: then all members switch at once. `ordered`: one after another in the order
//!   listed, each after the ones before it switched and passed their health checks.
//! - A member that passed its check stays in probation (its previous version kept, its
//!   journal on disk) until every member passed: then all commit.
//! - When one fails its check, it rolls back and holds its version as a single model does,
//!   and every other member that switched in the set rolls back too (without a hold: its own
//!   version was not at fault, and it switches again with the set once the failed member's
//!   release is replaced).
//! - A crash before the commit leaves journals that start-up reconciliation rolls back, so the
//!   members come back on their previous versions together.

use ferry_shared::ModelName;

/// How a set's members switch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetMode {
    /// All at once, after all are downloaded; all commit or all roll back.
    #[default]
    Together,
    /// In the order listed (a dependency first), each after the ones before it passed its
    /// check; all commit or all roll back.
    Ordered,
}

/// Where one member stands, as its updater says ([`Updater::set_stage`](super::Updater)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Runs what the coordinator wants, or is asked for nothing: nothing to switch.
    Settled,
    /// What the coordinator wants is held here (it failed, or it cannot be used): the set
    /// cannot switch until the coordinator names another version.
    Held,
    /// Getting what the coordinator wants (downloading, retrying, or about to).
    Preparing,
    /// Downloaded and verified; its switch waits.
    Ready,
    /// Switching, or switched with its health check under way.
    Switching,
    /// Switched and checked; its commit waits for the rest of the set.
    Passed,
    /// Undoing its switch.
    RollingBack,
}

/// One member as [`judge`] sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The model.
    pub model: ModelName,
    /// Where it stands.
    pub stage: Stage,
    /// Its own gate is open (inside its windows, not locked by the application).
    pub may_switch: bool,
}

/// What the set's state calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Per member, in order: `None` when the set lets it switch, else the member it waits for.
    pub waits_for: Vec<Option<ModelName>>,
    /// What happens to the members that switched.
    pub action: Option<SetAction>,
}

/// What happens to the members that switched in the set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetAction {
    /// Every member passed: confirm their switches.
    Commit,
    /// This member cannot go on (it failed its check, or its version is held): roll back the
    /// members that switched.
    Abort {
        /// The member at fault.
        cause: ModelName,
    },
}

/// Judges a set: who may switch, who waits for whom, and whether it commits or rolls back.
pub fn judge(mode: SetMode, members: &[Member]) -> Verdict {
    use Stage::*;
    let in_flight = members
        .iter()
        .any(|m| matches!(m.stage, Switching | Passed | RollingBack));
    let held = members.iter().find(|m| m.stage == Held);
    let action = match held {
        Some(h)
            if members
                .iter()
                .any(|m| matches!(m.stage, Switching | Passed)) =>
        {
            Some(SetAction::Abort {
                cause: h.model.clone(),
            })
        }
        _ if members.iter().all(|m| matches!(m.stage, Settled | Passed))
            && members.iter().any(|m| m.stage == Passed) =>
        {
            Some(SetAction::Commit)
        }
        _ => None,
    };
    // The member that keeps the set from going on: one not downloaded, held, rolling back,
    // or (before the set starts) ready but kept by its own gate.
    let blocker = members.iter().find(|m| match m.stage {
        Held | Preparing | RollingBack => true,
        Ready => !in_flight && !m.may_switch,
        Settled | Switching | Passed => false,
    });
    let waits_for = members
        .iter()
        .enumerate()
        .map(|(i, _)| {
            if let Some(b) = blocker {
                return Some(b.model.clone());
            }
            match mode {
                SetMode::Together => None,
                SetMode::Ordered => members[..i]
                    .iter()
                    .find(|m| !matches!(m.stage, Settled | Passed))
                    .map(|m| m.model.clone()),
            }
        })
        .collect();
    Verdict { waits_for, action }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Stage::*;

    fn set(stages: &[(&str, Stage)]) -> Vec<Member> {
        stages
            .iter()
            .map(|(name, stage)| Member {
                model: name.parse().unwrap(),
                stage: *stage,
                may_switch: true,
            })
            .collect()
    }

    fn waits(v: &Verdict) -> Vec<Option<String>> {
        v.waits_for
            .iter()
            .map(|w| w.as_ref().map(ToString::to_string))
            .collect()
    }

    #[test]
    fn together_waits_for_every_download_then_all_switch_at_once() {
        let members = set(&[("tokenizer", Ready), ("detector", Preparing)]);
        let v = judge(SetMode::Together, &members);
        assert_eq!(
            waits(&v),
            [Some("detector".into()), Some("detector".into())]
        );
        assert_eq!(v.action, None);
        let members = set(&[("tokenizer", Ready), ("detector", Ready)]);
        let v = judge(SetMode::Together, &members);
        assert_eq!(waits(&v), [None, None]);
        assert_eq!(v.action, None);
    }

    #[test]
    fn ordered_switches_one_after_another_each_after_the_check_before_it() {
        let mut members = set(&[("tokenizer", Ready), ("detector", Ready)]);
        assert_eq!(
            waits(&judge(SetMode::Ordered, &members)),
            [None, Some("tokenizer".into())]
        );
        members[0].stage = Switching;
        let v = judge(SetMode::Ordered, &members);
        assert_eq!(waits(&v), [None, Some("tokenizer".into())]);
        assert_eq!(v.action, None);
        members[0].stage = Passed;
        let v = judge(SetMode::Ordered, &members);
        assert_eq!(waits(&v), [None, None]);
        assert_eq!(
            v.action, None,
            "nothing commits while a member is to switch"
        );
        members[1].stage = Passed;
        assert_eq!(
            judge(SetMode::Ordered, &members).action,
            Some(SetAction::Commit)
        );
    }

    #[test]
    fn a_settled_member_does_not_hold_the_set_back() {
        let members = set(&[("tokenizer", Settled), ("detector", Ready)]);
        assert_eq!(waits(&judge(SetMode::Ordered, &members)), [None, None]);
        let members = set(&[("tokenizer", Settled), ("detector", Passed)]);
        assert_eq!(
            judge(SetMode::Together, &members).action,
            Some(SetAction::Commit)
        );
        let members = set(&[("tokenizer", Settled), ("detector", Settled)]);
        assert_eq!(judge(SetMode::Together, &members).action, None);
    }

    #[test]
    fn a_failed_member_rolls_back_the_ones_that_switched() {
        for mode in [SetMode::Together, SetMode::Ordered] {
            let members = set(&[("tokenizer", Passed), ("detector", Held)]);
            let v = judge(mode, &members);
            assert_eq!(
                v.action,
                Some(SetAction::Abort {
                    cause: "detector".parse().unwrap()
                })
            );
            assert_eq!(
                waits(&v),
                [Some("detector".into()), Some("detector".into())]
            );
        }
        // While the failed member rolls back, nobody switches and nothing commits yet.
        let members = set(&[("tokenizer", Passed), ("detector", RollingBack)]);
        let v = judge(SetMode::Together, &members);
        assert_eq!(v.action, None);
        assert_eq!(waits(&v)[0], Some("detector".into()));
    }

    #[test]
    fn a_held_member_keeps_the_others_waiting_without_aborting_anything() {
        let members = set(&[("tokenizer", Ready), ("detector", Held)]);
        let v = judge(SetMode::Together, &members);
        assert_eq!(v.action, None);
        assert_eq!(waits(&v)[0], Some("detector".into()));
    }

    #[test]
    fn the_set_starts_only_when_every_ready_member_may_switch_by_its_own_gate() {
        let mut members = set(&[("tokenizer", Ready), ("detector", Ready)]);
        members[1].may_switch = false;
        let v = judge(SetMode::Together, &members);
        assert_eq!(waits(&v)[0], Some("detector".into()));
        // Once under way, a member whose window closed waits for its own gate only.
        members[0].stage = Passed;
        let v = judge(SetMode::Together, &members);
        assert_eq!(waits(&v), [None, None]);
    }

    #[test]
    fn a_member_asked_for_a_new_version_mid_set_keeps_the_commit_back() {
        let members = set(&[("tokenizer", Passed), ("detector", Preparing)]);
        let v = judge(SetMode::Together, &members);
        assert_eq!(v.action, None);
        assert_eq!(waits(&v)[1], Some("detector".into()));
    }
}
