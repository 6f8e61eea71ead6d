//! Moves the lifecycle makes by itself: a release that has stood long enough in a stage moves
//! on where the policies say (`after_days` under the stage it goes to), as the engine's move,
//! through that stage's checks like any other. Pure: the releases' stage records, what must
//! not move, and the time in; the moves due out.

use std::collections::{BTreeMap, BTreeSet};

use ferry_shared::{ModelName, Version};

use super::{Stage, StagePolicy};

/// A move that is due.
#[derive(Clone, Debug, PartialEq)]
pub struct DueMove {
    /// The release's model.
    pub model: ModelName,
    /// The release.
    pub version: Version,
    /// Where it stands.
    pub from: Stage,
    /// Where it goes.
    pub to: Stage,
    /// The days it has stood in `from`.
    pub stood_days: f64,
    /// The days the policy asks for.
    pub after_days: f64,
}

impl DueMove {
    /// Why, for the audit trail.
    pub fn reason(&self) -> String {
        format!(
            "{:.1} days in {} ([stages.{}] after_days.{} = {})",
            self.stood_days, self.from, self.to, self.from, self.after_days
        )
    }
}

/// The moves due at `now` (Unix seconds): each release whose stage some policy's
/// `after_days` names, in it for at least that long, and not `held` (an alias points at it, a
/// rollout is taking it somewhere). Where two policies name the same stage, the shorter wait
/// wins (ties: the earlier stage in lifecycle order).
pub fn due(
    policies: &BTreeMap<Stage, StagePolicy>,
    stages: &BTreeMap<ModelName, BTreeMap<Version, (Stage, u64)>>,
    held: &BTreeSet<(ModelName, Version)>,
    now: u64,
) -> Vec<DueMove> {
    // For each stage left: the stage entered and the days it takes.
    let mut rules: BTreeMap<Stage, (Stage, f64)> = BTreeMap::new();
    for (to, policy) in policies {
        for (from, days) in &policy.after_days {
            let sooner = rules.get(from).is_none_or(|(_, d)| days < d);
            if sooner && from.can_move_to(*to) {
                rules.insert(*from, (*to, *days));
            }
        }
    }
    let mut out = Vec::new();
    for (model, versions) in stages {
        for (version, (stage, since)) in versions {
            let Some((to, after_days)) = rules.get(stage) else {
                continue;
            };
            if held.contains(&(model.clone(), version.clone())) {
                continue;
            }
            let stood_days = now.saturating_sub(*since) as f64 / 86_400.0;
            if stood_days >= *after_days {
                out.push(DueMove {
                    model: model.clone(),
                    version: version.clone(),
                    from: *stage,
                    to: *to,
                    stood_days,
                    after_days: *after_days,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn policies(text: &str) -> BTreeMap<Stage, StagePolicy> {
        #[derive(serde::Deserialize)]
        struct File {
            stages: BTreeMap<Stage, StagePolicy>,
        }
        let file: File = toml::from_str(text).unwrap();
        for (stage, policy) in &file.stages {
            policy.validate(*stage).unwrap();
        }
        file.stages
    }

    fn at(
        model: &str,
        list: &[(&str, Stage, u64)],
    ) -> BTreeMap<ModelName, BTreeMap<Version, (Stage, u64)>> {
        let versions = list
            .iter()
            .map(|(v, s, since)| (v.parse().unwrap(), (*s, *since)))
            .collect();
        [(model.parse().unwrap(), versions)].into()
    }

    #[test]
    fn a_release_moves_on_once_it_has_stood_long_enough_unless_held() {
        let policies =
            policies("[stages.archived]\nafter_days = { deprecated = 30, rejected = 7 }\n");
        let stages = at(
            "m",
            &[
                ("1.0.0", Stage::Deprecated, 0),
                ("1.1.0", Stage::Deprecated, 10 * DAY),
                ("1.2.0", Stage::Rejected, 20 * DAY),
                ("1.3.0", Stage::Production, 0),
                ("0.9.0", Stage::Deprecated, 0),
            ],
        );
        let held = [("m".parse().unwrap(), "0.9.0".parse().unwrap())].into();
        let due = due(&policies, &stages, &held, 31 * DAY);
        let moved: Vec<(String, Stage)> =
            due.iter().map(|d| (d.version.to_string(), d.to)).collect();
        assert_eq!(
            moved,
            [
                ("1.0.0".into(), Stage::Archived),
                ("1.2.0".into(), Stage::Archived)
            ],
            "1.1.0 has stood 21 days of 30; 0.9.0 is held; production has no rule"
        );
        assert_eq!(
            due[0].reason(),
            "31.0 days in deprecated ([stages.archived] after_days.deprecated = 30)"
        );
    }

    #[test]
    fn a_wait_that_cannot_be_a_move_or_is_not_a_duration_is_refused() {
        for bad in [
            "[stages.production]\nafter_days = { development = 1 }\n",
            "[stages.archived]\nafter_days = { deprecated = 0 }\n",
            "[stages.archived]\nafter_days = { deprecated = -3 }\n",
            "[stages.archived]\nafter_days = { deprecated = nan }\n",
        ] {
            #[derive(serde::Deserialize)]
            struct File {
                stages: BTreeMap<Stage, StagePolicy>,
            }
            let file: File = toml::from_str(bad).unwrap();
            let (stage, policy) = file.stages.into_iter().next().unwrap();
            assert!(policy.validate(stage).is_err(), "{bad}");
        }
    }
}
