//! Retention and garbage collection, the pure part: which releases' bytes the retention
//! policies let go, which stored artifacts no live release uses any more, and which chunks
//! only those used. Pure: the caller gathers the facts (stages, what aliases, rollouts and
//! devices hold, each artifact's chunks) and carries out the plan.
//!
//! A release whose bytes go keeps its record (lineage, audit, model card); only its
//! artifacts' chunks are freed, and only where no other live release shares them. Never
//! freed: anything an alias or an unfinished rollout points to, or any device reports
//! running, as its previous version, or staged as a candidate.

use std::collections::{BTreeMap, BTreeSet};

use ferry_shared::{Digest, ModelName, Version};
use serde::{Deserialize, Serialize};

use crate::rules::lifecycle::Stage;

/// How long a release in a stage keeps its bytes (`[retention.archived] keep_days = 90`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Days since it entered the stage.
    pub keep_days: u64,
}

/// Stored artifacts never published are kept this long (an upload about to be published).
pub const UNPUBLISHED_GRACE_SECS: u64 = 24 * 3600;

/// How long the stored part of an interrupted upload waits to be resumed before a collection
/// removes it.
pub const UPLOAD_EXPIRY_SECS: u64 = 7 * 24 * 3600;

/// What the planner knows of one release.
#[derive(Clone, Debug)]
pub struct ReleaseFacts {
    /// The release's model.
    pub model: ModelName,
    /// The release's version.
    pub version: Version,
    /// Its stage.
    pub stage: Stage,
    /// Since when (Unix seconds).
    pub since: u64,
    /// Its artifacts (variant hashes).
    pub blobs: Vec<Digest>,
    /// Its bytes were freed before.
    pub purged: bool,
}

/// What the planner knows of one stored artifact.
#[derive(Clone, Debug)]
pub struct BlobFacts {
    /// Its hash.
    pub hash: Digest,
    /// When it was uploaded (Unix seconds).
    pub added_at: u64,
    /// Its chunks.
    pub chunks: Vec<Digest>,
}

/// Everything the planner decides on.
#[derive(Clone, Debug)]
pub struct Facts<'a> {
    /// Now (Unix seconds).
    pub now: u64,
    /// The policies.
    pub retention: &'a BTreeMap<Stage, Retention>,
    /// Every release.
    pub releases: Vec<ReleaseFacts>,
    /// Why releases must keep their bytes: pointed at by an alias or rollout, or held by
    /// devices.
    pub protected: BTreeMap<(ModelName, Version), Vec<String>>,
    /// Every stored artifact.
    pub blobs: Vec<BlobFacts>,
}

/// A release in the plan, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    /// The release's model.
    pub model: ModelName,
    /// The release's version.
    pub version: Version,
    /// Why its bytes go, or why they stay.
    pub why: String,
}

/// What a collection frees.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcPlan {
    /// Releases whose bytes go.
    pub purge: Vec<Decided>,
    /// Releases a policy would let go but that must stay.
    pub kept: Vec<Decided>,
    /// Stored artifacts no live release uses (their records go).
    pub blobs: Vec<Digest>,
    /// Chunks only those artifacts used (their files go).
    pub chunks: BTreeSet<Digest>,
}

/// What retention and garbage collection would free, given `facts`.
pub fn plan(facts: &Facts<'_>) -> GcPlan {
    let mut out = GcPlan::default();
    let mut live_releases: Vec<&ReleaseFacts> = Vec::new();
    for r in &facts.releases {
        if r.purged {
            continue;
        }
        let due = facts
            .retention
            .get(&r.stage)
            .filter(|_| r.stage != Stage::Production)
            .filter(|policy| facts.now.saturating_sub(r.since) >= policy.keep_days * 86_400);
        let Some(policy) = due else {
            live_releases.push(r);
            continue;
        };
        let key = (r.model.clone(), r.version.clone());
        let days = facts.now.saturating_sub(r.since) / 86_400;
        match facts.protected.get(&key) {
            Some(reasons) => {
                live_releases.push(r);
                out.kept.push(Decided {
                    model: r.model.clone(),
                    version: r.version.clone(),
                    why: format!(
                        "{} for {days} days (policy: {} days), but {}",
                        r.stage,
                        policy.keep_days,
                        reasons.join("; ")
                    ),
                });
            }
            None => out.purge.push(Decided {
                model: r.model.clone(),
                version: r.version.clone(),
                why: format!(
                    "{} for {days} days (policy: {} days)",
                    r.stage, policy.keep_days
                ),
            }),
        }
    }
    let live_blobs: BTreeSet<Digest> = live_releases
        .iter()
        .flat_map(|r| r.blobs.iter().copied())
        .collect();
    let mut live_chunks: BTreeSet<Digest> = BTreeSet::new();
    let mut dead: Vec<&BlobFacts> = Vec::new();
    for blob in &facts.blobs {
        let published = facts.releases.iter().any(|r| r.blobs.contains(&blob.hash));
        let young = facts.now.saturating_sub(blob.added_at) < UNPUBLISHED_GRACE_SECS;
        if live_blobs.contains(&blob.hash) || (!published && young) {
            live_chunks.extend(blob.chunks.iter().copied());
        } else {
            dead.push(blob);
        }
    }
    for blob in dead {
        out.blobs.push(blob.hash);
        out.chunks.extend(
            blob.chunks
                .iter()
                .filter(|c| !live_chunks.contains(*c))
                .copied(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const NOW: u64 = 1_000 * DAY;

    fn d(tag: &str) -> Digest {
        Digest::of(tag.as_bytes())
    }

    fn release(version: &str, stage: Stage, days_ago: u64, blob: &str) -> ReleaseFacts {
        ReleaseFacts {
            model: "m".parse().unwrap(),
            version: version.parse().unwrap(),
            stage,
            since: NOW - days_ago * DAY,
            blobs: vec![d(blob)],
            purged: false,
        }
    }

    fn blob(name: &str, chunks: &[&str], days_ago: u64) -> BlobFacts {
        BlobFacts {
            hash: d(name),
            added_at: NOW - days_ago * DAY,
            chunks: chunks.iter().map(|c| d(c)).collect(),
        }
    }

    fn versions(decided: &[Decided]) -> Vec<String> {
        decided.iter().map(|x| x.version.to_string()).collect()
    }

    #[test]
    fn only_what_retention_lets_go_and_nothing_protected_or_shared() {
        let retention = BTreeMap::from([
            (Stage::Archived, Retention { keep_days: 90 }),
            (Stage::Production, Retention { keep_days: 1 }),
        ]);
        let facts = Facts {
            now: NOW,
            retention: &retention,
            releases: vec![
                release("1.0.0", Stage::Archived, 120, "a"),
                release("1.1.0", Stage::Archived, 200, "b"),
                release("1.2.0", Stage::Archived, 30, "c"),
                release("2.0.0", Stage::Production, 500, "d"),
                release("0.9.0", Stage::Archived, 300, "e"),
            ],
            protected: BTreeMap::from([(
                ("m".parse().unwrap(), "1.1.0".parse().unwrap()),
                vec!["2 devices run it".into()],
            )]),
            blobs: vec![
                blob("a", &["a1", "shared"], 120),
                blob("b", &["b1"], 200),
                blob("c", &["c1", "shared"], 30),
                blob("d", &["d1"], 500),
                blob("e", &["e1", "a1"], 300),
                blob("orphan-old", &["o1", "d1"], 5),
                blob("orphan-new", &["n1"], 0),
            ],
        };
        let plan = plan(&facts);
        assert_eq!(versions(&plan.purge), ["1.0.0", "0.9.0"]);
        assert!(
            plan.purge[0]
                .why
                .contains("archived for 120 days (policy: 90 days)")
        );
        assert_eq!(versions(&plan.kept), ["1.1.0"]);
        assert!(plan.kept[0].why.contains("2 devices run it"));
        assert_eq!(plan.blobs, [d("a"), d("e"), d("orphan-old")]);
        // "shared" stays for 1.2.0, "d1" for production; "a1" goes with both its users.
        assert_eq!(plan.chunks, BTreeSet::from([d("a1"), d("e1"), d("o1")]));
    }

    #[test]
    fn nothing_goes_without_a_policy_and_a_purged_release_is_not_purged_twice() {
        let none = BTreeMap::new();
        let mut old = release("1.0.0", Stage::Archived, 999, "a");
        let facts = Facts {
            now: NOW,
            retention: &none,
            releases: vec![old.clone()],
            protected: BTreeMap::new(),
            blobs: vec![blob("a", &["a1"], 999)],
        };
        assert_eq!(plan(&facts), GcPlan::default());
        old.purged = true;
        let policy = BTreeMap::from([(Stage::Archived, Retention { keep_days: 1 })]);
        let after = plan(&Facts {
            retention: &policy,
            releases: vec![old],
            ..facts
        });
        assert!(after.purge.is_empty());
        assert_eq!(after.blobs, [d("a")], "its artifact is no longer live");
    }
}
