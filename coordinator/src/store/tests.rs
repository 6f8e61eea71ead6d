//! Store behaviour that the registry's promises rest on.

use ferry_shared::{AliasName, Digest, SecretKey, SignedRelease};

use super::engine::Rows;
use super::records::AliasRecord;
use super::tables::AUDIT;
use super::testing::{Under, on, publish_bytes, release, setup, with_blob};
use super::{PublishOutcome, Store, StoreError};

fn a_version_is_published_once_and_never_overwritten() {
    let (_dir, store, key) = setup();
    with_blob(&store, b"v1 bytes");
    with_blob(&store, b"other bytes");
    let first = SignedRelease::sign(&release("1.0.0", b"v1 bytes", 10), &key).unwrap();
    assert_eq!(
        store.publish(&first, "alice", 100).unwrap(),
        PublishOutcome::Published { latest_moved: true }
    );

    // The same content, manifest rebuilt later: an idempotent success.
    let again = SignedRelease::sign(&release("1.0.0", b"v1 bytes", 99), &key).unwrap();
    assert_eq!(
        store.publish(&again, "alice", 200).unwrap(),
        PublishOutcome::AlreadyPublished
    );

    // Other bytes under the same version: refused, and the stored release is untouched.
    let other = SignedRelease::sign(&release("1.0.0", b"other bytes", 10), &key).unwrap();
    let err = store.publish(&other, "mallory", 300).unwrap_err();
    assert!(matches!(err, StoreError::Immutable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("detector 1.0.0") && text.contains("immutable"),
        "{text}"
    );
    let (stored, meta) = store
        .release(&"detector".parse().unwrap(), &"1.0.0".parse().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(stored.variants[0].hash, Digest::of(b"v1 bytes"));
    assert_eq!(
        meta.envelope, first.envelope_bytes,
        "the envelope is kept verbatim"
    );
    assert_eq!(meta.published_by, "alice");
}

fn a_newer_revision_of_the_same_content_replaces_the_envelope_and_is_audited() {
    let (_dir, store, key) = setup();
    with_blob(&store, b"v1 bytes");
    with_blob(&store, b"other bytes");
    let first = SignedRelease::sign(&release("1.0.0", b"v1 bytes", 10), &key).unwrap();
    store.publish(&first, "alice", 100).unwrap();
    let name = "detector".parse().unwrap();
    let version = "1.0.0".parse().unwrap();

    // Revision 2 under a new key, living longer.
    let new_key = SecretKey::from_seed(&[42; 32]);
    let mut longer = release("1.0.0", b"v1 bytes", 10);
    longer.revision = 2;
    longer.expires += 1_000_000;
    let second = SignedRelease::sign(&longer, &new_key).unwrap();
    assert_eq!(
        store.publish(&second, "bob", 200).unwrap(),
        PublishOutcome::Resigned { from: 1 }
    );
    let (stored, meta) = store.release(&name, &version).unwrap().unwrap();
    assert_eq!((stored.revision, stored.expires), (2, longer.expires));
    assert_eq!(meta.envelope, second.envelope_bytes);
    assert_eq!(meta.signer, new_key.public().key_id());
    assert_eq!(
        (meta.published_by.as_str(), meta.published_at),
        ("alice", 100),
        "who published it first stays on record"
    );

    // The older signing again changes nothing; other content under revision 3 is refused.
    assert_eq!(
        store.publish(&first, "mallory", 300).unwrap(),
        PublishOutcome::AlreadyPublished
    );
    let mut other = release("1.0.0", b"other bytes", 10);
    other.revision = 3;
    let err = store
        .publish(&SignedRelease::sign(&other, &key).unwrap(), "mallory", 300)
        .unwrap_err();
    assert!(matches!(err, StoreError::Immutable { .. }), "{err}");
    assert_eq!(
        store.release(&name, &version).unwrap().unwrap().1.envelope,
        second.envelope_bytes
    );
    let audit = store.audit(0, 100).unwrap();
    let resign = audit
        .iter()
        .find(|e| e.action == "resign")
        .expect("the re-signing is in the audit trail");
    assert!(
        resign.detail.contains("revision 1 -> 2"),
        "{}",
        resign.detail
    );
}

fn a_release_needs_its_bytes_uploaded_first() {
    let (_dir, store, key) = setup();
    let signed = SignedRelease::sign(&release("1.0.0", b"never uploaded", 1), &key).unwrap();
    assert!(matches!(
        store.publish(&signed, "a", 1),
        Err(StoreError::MissingBlob { .. })
    ));
    assert!(store.releases(None).unwrap().is_empty());
}

fn latest_follows_the_newest_stable_release() {
    let (_dir, store, key) = setup();
    let latest: AliasName = "latest".parse().unwrap();
    let model = "detector".parse().unwrap();
    for (v, bytes) in [("1.1.0", &b"a"[..]), ("1.0.0", b"b"), ("2.0.0-rc.1", b"c")] {
        publish_bytes(&store, &key, v, bytes);
    }
    let record = store.alias(&model, &latest).unwrap().unwrap();
    assert_eq!(
        record.version.to_string(),
        "1.1.0",
        "older and pre-release versions leave it"
    );
}

fn aliases_point_only_at_published_versions_and_record_who_and_why() {
    let (_dir, store, key) = setup();
    publish_bytes(&store, &key, "1.0.0", b"a");
    let model = "detector".parse().unwrap();
    let prod: AliasName = "prod".parse().unwrap();
    let record = |v: &str| AliasRecord {
        version: v.parse().unwrap(),
        set_at: 5,
        set_by: "bob".into(),
        reason: Some("canary ok".into()),
    };
    assert!(matches!(
        store.set_alias(&model, &prod, record("9.9.9")),
        Err(StoreError::NoSuchRelease { .. })
    ));
    assert_eq!(
        store.set_alias(&model, &prod, record("1.0.0")).unwrap(),
        None
    );
    let audit = store.audit(0, 100).unwrap();
    let entry = audit
        .iter()
        .find(|e| e.action == "alias.set" && e.subject == "detector@prod")
        .unwrap();
    assert_eq!(entry.actor, "bob");
    assert!(entry.detail.contains("(unset) -> 1.0.0") && entry.detail.contains("canary ok"));
}

/// Writes `entry` over the stored audit entry `seq`, as someone with the database file could.
fn tamper(store: &Store, seq: u64, entry: Option<&super::records::AuditEntry>) {
    let txn = store.write().unwrap();
    match entry {
        Some(e) => txn.insert(AUDIT, seq, e).unwrap(),
        None => assert!(txn.remove(AUDIT, seq).unwrap()),
    }
    txn.commit().unwrap();
}

fn the_audit_chain_names_the_first_broken_link() {
    let (_dir, store, key) = setup();
    for (v, bytes) in [("1.0.0", &b"a"[..]), ("1.1.0", b"b"), ("1.2.0", b"c")] {
        publish_bytes(&store, &key, v, bytes);
    }
    let intact = store.verify_audit(None).unwrap();
    assert_eq!(intact.broken, None);
    let entries = intact.entries;
    let head = intact.head.unwrap();
    assert_eq!(head.seq, entries);
    assert_eq!(
        head.to_string().parse::<crate::api::Anchor>().unwrap(),
        head
    );

    // An edited entry: the link after it breaks.
    let mut second = store.audit(1, 1).unwrap().remove(0);
    let original = second.clone();
    second.actor = "someone else".into();
    tamper(&store, 2, Some(&second));
    let found = store.verify_audit(None).unwrap();
    let broken = found.broken.unwrap();
    assert_eq!(broken.seq, 3);
    assert!(
        broken.reason.contains("does not follow entry 2"),
        "{}",
        broken.reason
    );
    assert_eq!(found.entries, 2, "entries 1 and 2 still link up");
    tamper(&store, 2, Some(&original));
    assert_eq!(store.verify_audit(None).unwrap().broken, None);

    // A removed entry in the middle.
    tamper(&store, 2, None);
    let broken = store.verify_audit(None).unwrap().broken.unwrap();
    assert_eq!(broken.seq, 3);
    assert!(
        broken.reason.contains("entry 2 is missing"),
        "{}",
        broken.reason
    );
    tamper(&store, 2, Some(&original));

    // The tail cut off or rewritten leaves a chain that links up: only the anchor kept
    // from an earlier walk shows it.
    let last = store.audit(entries - 1, 1).unwrap().remove(0);
    tamper(&store, entries, None);
    assert_eq!(store.verify_audit(None).unwrap().broken, None);
    let broken = store.verify_audit(Some(head)).unwrap().broken.unwrap();
    assert!(
        broken.reason.contains("ends before entry"),
        "{}",
        broken.reason
    );
    let mut rewritten = last.clone();
    rewritten.detail = "nothing to see".into();
    tamper(&store, entries, Some(&rewritten));
    assert_eq!(store.verify_audit(None).unwrap().broken, None);
    let broken = store.verify_audit(Some(head)).unwrap().broken.unwrap();
    assert_eq!(broken.seq, entries);
    assert!(broken.reason.contains("rewritten"), "{}", broken.reason);
    tamper(&store, entries, Some(&last));
    assert_eq!(store.verify_audit(Some(head)).unwrap().broken, None);
}

fn rollouts_persist_refuse_conflicts_and_audit_every_change() {
    use ferry_shared::rollout::{Command, Phase, Plan, RolloutState, Selector};

    use super::audit::Change;
    use super::rollouts::RolloutRecord;

    let (dir, store, key) = setup();
    publish_bytes(&store, &key, "2.0.0", b"v2 bytes");
    let record = |id: &str, cohort: &str, target: &str| {
        let plan = Plan::with_default_waves(
            id,
            "detector".parse().unwrap(),
            target.parse().unwrap(),
            Selector::parse(cohort).unwrap(),
        );
        RolloutRecord {
            state: RolloutState::start(&plan, 10),
            plan,
            alias: "prod".parse::<AliasName>().unwrap(),
            created_by: "alice".into(),
            created_at: 10,
            created_at_ms: 10_000,
            updated_at: 10,
            final_gates: Vec::new(),
        }
    };
    assert!(matches!(
        store.create_rollout(&record("r0", "", "9.9.9"), ""),
        Err(StoreError::NoSuchRelease { .. })
    ));
    store
        .create_rollout(&record("r1", "region=eu", "2.0.0"), "eu first")
        .unwrap();
    // Same model and cohort while r1 is active: refused, naming r1. Another cohort is fine.
    let err = store
        .create_rollout(&record("r2", "region=eu", "2.0.0"), "")
        .unwrap_err();
    assert!(err.to_string().contains("r1"), "{err}");
    store
        .create_rollout(&record("r3", "region=us", "2.0.0"), "")
        .unwrap();
    assert!(matches!(
        store.create_rollout(&record("r1", "region=asia", "2.0.0"), ""),
        Err(StoreError::RolloutConflict(_))
    ));

    let mut state = store.rollout("r1").unwrap().unwrap().state;
    state
        .command(&Command::Abort("changed my mind".into()), 20)
        .unwrap();
    store
        .update_rollout(
            "r1",
            &state,
            None,
            Change {
                at: 20,
                actor: "bob",
                action: "rollout.abort",
                subject: "r1".into(),
                detail: "changed my mind".into(),
            },
        )
        .unwrap();
    // Once r1 ended, its cohort is free again.
    store
        .create_rollout(&record("r4", "region=eu", "2.0.0"), "")
        .unwrap();

    // Reopened, everything is where it was.
    drop(store);
    let store = dir.reopen();
    let ids: Vec<(String, Phase)> = store
        .rollouts()
        .unwrap()
        .into_iter()
        .map(|r| (r.plan.id, r.state.phase))
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&("r1".into(), Phase::Aborted)));
    let audit = store.audit(0, 100).unwrap();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .filter(|e| e.action.starts_with("rollout."))
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("rollout.create", "alice"),
            ("rollout.create", "alice"),
            ("rollout.abort", "bob"),
            ("rollout.create", "alice"),
        ]
    );
    assert!(audit.iter().any(|e| e.detail.contains("reason: eu first")));
}

fn a_stage_move_is_refused_when_the_release_moved_meanwhile_and_approvals_need_staging() {
    use super::stages::MoveEffects;
    use crate::rules::lifecycle::StageMove;
    use crate::rules::lifecycle::{Approval, Stage};
    let (_dir, store, key) = setup();
    publish_bytes(&store, &key, "1.0.0", b"v1 bytes");
    let model = "detector".parse().unwrap();
    let version = "1.0.0".parse().unwrap();
    let step = |from, to| StageMove {
        from,
        to,
        at: 5,
        by: "olga".into(),
        reason: None,
        approvers: Vec::new(),
        checks: Vec::new(),
    };
    let approval = |by: &str| Approval {
        by: by.into(),
        at: 4,
        reason: None,
    };
    let approvable = [Stage::Staging];
    assert!(matches!(
        store.approve(&model, &version, approval("alice"), &approvable),
        Err(StoreError::StageConflict(m)) if m.contains("in development")
    ));
    store
        .move_stage(
            &model,
            &version,
            step(Stage::Development, Stage::Staging),
            MoveEffects::default(),
        )
        .unwrap();
    // Someone else saw it in development: their move is refused, nothing changes.
    let err = store
        .move_stage(
            &model,
            &version,
            step(Stage::Development, Stage::Rejected),
            MoveEffects::default(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::StageConflict(m) if m.contains("meanwhile")),
        "{err}"
    );
    store
        .approve(&model, &version, approval("alice"), &approvable)
        .unwrap();
    let record = store
        .approve(&model, &version, approval("alice"), &approvable)
        .unwrap();
    assert_eq!(
        record.approvals.len(),
        1,
        "a second approval replaces the first"
    );
    let record = store
        .move_stage(
            &model,
            &version,
            step(Stage::Staging, Stage::Production),
            MoveEffects::default(),
        )
        .unwrap();
    assert!(record.approvals.is_empty(), "a move uses up the approvals");
    assert_eq!(record.history.len(), 2);
    assert_eq!(
        store.stage(&model, &version).unwrap().unwrap().stage,
        Stage::Production
    );
}

#[test]
fn a_store_written_by_a_newer_build_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    drop(Store::open(&path).unwrap());
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        // As an older or newer build sees the file: redb's own table, not the store's.
        txn.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .insert("store_format", super::migrate::STORE_FORMAT + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    match Store::open(&path) {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!(found, super::migrate::STORE_FORMAT + 1);
            assert_eq!(supported, super::migrate::STORE_FORMAT);
        }
        Err(e) => panic!("refused, but not by name: {e}"),
        Ok(_) => panic!("opened a store from a newer build"),
    }
}

#[test]
fn device_records_of_the_first_format_are_migrated_at_open() {
    use ferry_shared::wire::{ErrorKind, InstallError, ModelReport, UpdatePhase};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.redb");
    let key = SecretKey::from_seed(&[7; 32]).public();
    let mut record = super::records::DeviceRecord::following(
        key,
        "prod",
        Default::default(),
        ModelReport {
            model: "detector".parse().unwrap(),
            active: Some("1.0.0".parse().unwrap()),
            previous: None,
            candidate: None,
            phase: UpdatePhase::Idle,
            last_error: Some(InstallError {
                version: "2.0.0".parse().unwrap(),
                kind: ErrorKind::Integrity,
                message: "bad".into(),
                at: 3,
            }),
        },
    );
    record.last_seen = 42;
    // The first format: the same fields, without failure times, behind format byte 1.
    let mut v1 = vec![1u8];
    v1.extend(
        postcard::to_allocvec(&(
            record.public_key,
            record.enrolled_at,
            record.last_seen,
            &record.agent_version,
            &record.labels,
            &record.follows,
            &record.models,
            record.events_through,
            &record.recent_events,
        ))
        .unwrap(),
    );
    let id = ferry_shared::wire::DeviceId::of(&key);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("devices"))
            .unwrap()
            .insert(id.as_str(), v1.as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    let migrated = store.device(&id).unwrap().unwrap();
    assert_eq!(migrated.models, record.models);
    assert_eq!(migrated.error_seen_at(&"detector".parse().unwrap()), 42_000);
    // Rewritten in the current format, in the transaction that opened it.
    let stored = store
        .read()
        .unwrap()
        .get_raw(super::tables::DEVICES, id.as_str())
        .unwrap()
        .unwrap();
    assert_eq!(stored[0], 3);
    assert!(migrated.conditions.is_none());
}

/// One holder at a time; the lease passes on when it lapses or is given up, and each change
/// of holder is audited.
fn a_lease_has_one_holder_until_it_lapses_or_is_given_up() {
    let (_dir, store, _key) = setup();
    assert!(store.hold_lease("driver", "a", 1_000, 5_000).unwrap());
    assert!(!store.hold_lease("driver", "b", 2_000, 5_000).unwrap());
    // Renewed by its holder: still a's past the first expiry.
    assert!(store.hold_lease("driver", "a", 4_000, 5_000).unwrap());
    assert!(!store.hold_lease("driver", "b", 7_000, 5_000).unwrap());
    // Lapsed: b takes it.
    assert!(store.hold_lease("driver", "b", 9_001, 5_000).unwrap());
    assert!(!store.hold_lease("driver", "a", 9_002, 5_000).unwrap());
    // Another lease is another matter.
    assert!(store.hold_lease("samples", "a", 9_003, 5_000).unwrap());
    // Given up: a takes it at once. Giving up one not held changes nothing.
    store.release_lease("driver", "a").unwrap();
    assert!(!store.hold_lease("driver", "a", 9_004, 5_000).unwrap());
    store.release_lease("driver", "b").unwrap();
    assert!(store.hold_lease("driver", "a", 9_005, 5_000).unwrap());
    let takes: Vec<(String, String)> = store
        .audit(0, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "lease.take")
        .map(|e| (e.actor, e.subject))
        .collect();
    let expected = [
        ("a", "driver"),
        ("b", "driver"),
        ("a", "samples"),
        ("a", "driver"),
    ];
    assert_eq!(
        takes,
        expected.map(|(a, s)| (a.to_owned(), s.to_owned())).to_vec()
    );
    let held = store.leases().unwrap();
    assert_eq!(held.len(), 2);
}

/// Shared holds go together; an exclusive one waits for every live hold and keeps every
/// other out; lapsed holds count for nothing.
fn a_fence_admits_many_shared_holds_or_one_exclusive() {
    use super::fences::Hold;
    let (_dir, store, _key) = setup();
    let hold = |exclusive: bool, what: &str, until: u64| Hold {
        exclusive,
        what: what.into(),
        expires_at_ms: until,
    };
    let enter = |holder: &str, h: &Hold, now: u64| store.enter_fence("gc", holder, h, now).unwrap();
    assert_eq!(
        enter("up1", &hold(false, "upload 1", 10_000), 1_000),
        Ok(())
    );
    assert_eq!(
        enter("up2", &hold(false, "upload 2", 10_000), 1_000),
        Ok(())
    );
    let refused = enter("gc", &hold(true, "collection", 10_000), 2_000).unwrap_err();
    assert!(
        refused.contains("upload 1") && refused.contains("upload 2"),
        "{refused}"
    );
    store.leave_fence("gc", "up1").unwrap();
    store.leave_fence("gc", "up2").unwrap();
    assert_eq!(
        enter("gc", &hold(true, "collection", 10_000), 3_000),
        Ok(())
    );
    let refused = enter("up3", &hold(false, "upload 3", 20_000), 4_000).unwrap_err();
    assert_eq!(refused, "collection");
    // Renewed by its holder, it keeps others out past its first expiry ...
    assert_eq!(
        enter("gc", &hold(true, "collection", 15_000), 9_000),
        Ok(())
    );
    assert!(enter("up3", &hold(false, "upload 3", 20_000), 12_000).is_err());
    // ... and lapsed, it does not.
    assert_eq!(
        enter("up3", &hold(false, "upload 3", 30_000), 15_001),
        Ok(())
    );
    // Another fence is another matter.
    assert_eq!(
        store
            .enter_fence("other", "x", &hold(true, "x", 40_000), 15_002)
            .unwrap(),
        Ok(())
    );
}

/// A device's live state follows the node that holds its session: a close from the node it
/// has left changes nothing.
fn a_session_closed_on_a_node_the_device_left_does_not_mark_it_gone() {
    let (_dir, store, _key) = setup();
    let id = ferry_shared::wire::DeviceId::of(&SecretKey::from_seed(&[9; 32]).public());
    let live = |store: &Store| store.live_records().unwrap().remove(&id).unwrap();
    store.record_session(&id, "a", true, 1_000).unwrap();
    assert_eq!(
        (live(&store).node.as_str(), live(&store).connected),
        ("a", true)
    );
    // It moved to b before a noticed it had gone.
    store.record_session(&id, "b", true, 2_000).unwrap();
    store.record_session(&id, "a", false, 3_000).unwrap();
    let now = live(&store);
    assert_eq!(
        (now.node.as_str(), now.connected, now.seen_ms),
        ("b", true, 2_000)
    );
    store.record_session(&id, "b", false, 4_000).unwrap();
    let now = live(&store);
    assert_eq!(
        (now.node.as_str(), now.connected, now.seen_ms),
        ("b", false, 4_000)
    );
}

/// A batch of reports is read and written in a few statements: a device reported twice in
/// one batch ends with its last state, an unknown device is skipped, and each reported
/// device's live row names this node.
fn a_batch_of_reports_merges_each_device_in_order_and_writes_its_live_row() {
    use ferry_shared::wire::{DeviceId, DeviceReport};

    use super::records::DeviceRecord;

    let (_dir, store, _key) = setup();
    let keys: Vec<_> = (0..3u8)
        .map(|i| SecretKey::from_seed(&[20 + i; 32]).public())
        .collect();
    let ids: Vec<DeviceId> = keys.iter().map(DeviceId::of).collect();
    for (key, id) in keys.iter().zip(&ids) {
        store
            .enroll(
                id,
                &DeviceRecord::new(key, 1),
                super::enrollment::Admission::Bootstrap,
                1,
            )
            .unwrap()
            .unwrap();
    }
    let stranger = DeviceId::of(&SecretKey::from_seed(&[30; 32]).public());
    // The merge records the agent version a report names in the record; only a new one is
    // a change.
    let merge = |_: &DeviceId, record: &mut DeviceRecord, report: &DeviceReport| {
        let version = format!("{}", report.models.len());
        let changed = record.agent_version != version;
        record.agent_version = version;
        (Vec::new(), changed)
    };
    let report = |models: usize| DeviceReport {
        models: (0..models)
            .map(|_| ferry_shared::wire::ModelReport {
                model: "detector".parse().unwrap(),
                active: None,
                previous: None,
                candidate: None,
                phase: ferry_shared::wire::UpdatePhase::Idle,
                last_error: None,
            })
            .collect(),
        ..DeviceReport::default()
    };
    let batch = vec![
        (ids[0].clone(), report(1), 10),
        (stranger.clone(), report(1), 10),
        (ids[1].clone(), report(2), 11),
        (ids[0].clone(), report(3), 12),
        (ids[0].clone(), report(3), 13),
    ];
    // The distributions a device last sent ride along in its live row (for drift gates
    // judged by any node).
    let mut scores = ferry_shared::rollout::Distribution::default();
    scores.record(0.93);
    let sent = ferry_shared::wire::ReportedDistribution {
        model: "detector".parse().unwrap(),
        version: "1.0.0".parse().unwrap(),
        metric: "score".into(),
        values: scores,
    };
    let values = |id: &DeviceId| {
        if *id == ids[1] {
            vec![sent.clone()]
        } else {
            Vec::new()
        }
    };
    let results = store
        .merge_reports(&batch, merge, Some("node-a"), values)
        .unwrap();
    assert_eq!(results.len(), batch.len());
    assert!(results[1].is_none(), "an unknown device is skipped");
    assert!(
        results
            .iter()
            .enumerate()
            .all(|(i, r)| i == 1 || r.is_some())
    );

    let first = store.device(&ids[0]).unwrap().unwrap();
    assert_eq!(first.agent_version, "3", "the last report of a device wins");
    assert_eq!(first.last_seen, 12, "the repeat at 13 changed nothing");
    let second = store.device(&ids[1]).unwrap().unwrap();
    assert_eq!((second.agent_version.as_str(), second.last_seen), ("2", 11));
    let untouched = store.device(&ids[2]).unwrap().unwrap();
    assert_eq!(untouched.last_seen, 1);
    assert!(store.device(&stranger).unwrap().is_none());

    let live = store.live_records().unwrap();
    let row = &live[&ids[0]];
    assert_eq!(
        (row.node.as_str(), row.connected, row.seen_ms),
        ("node-a", true, 13_000)
    );
    assert_eq!(live[&ids[1]].seen_ms, 11_000);
    assert_eq!(live[&ids[1]].distributions, vec![sent.clone()]);
    assert!(row.distributions.is_empty());
    assert!(!live.contains_key(&ids[2]) && !live.contains_key(&stranger));
}

/// Each listed test, once on every engine: the store's logic is the same over both, and so
/// must be what it does.
macro_rules! on_every_engine {
    ($($test:ident),* $(,)?) => {
        mod on_redb {
            $(#[test]
            fn $test() {
                super::on(super::Under::Redb, super::$test);
            })*
        }
        mod on_postgres {
            $(#[test]
            fn $test() {
                super::on(super::Under::Postgres, super::$test);
            })*
        }
    };
}

on_every_engine!(
    a_version_is_published_once_and_never_overwritten,
    a_newer_revision_of_the_same_content_replaces_the_envelope_and_is_audited,
    a_release_needs_its_bytes_uploaded_first,
    latest_follows_the_newest_stable_release,
    aliases_point_only_at_published_versions_and_record_who_and_why,
    the_audit_chain_names_the_first_broken_link,
    rollouts_persist_refuse_conflicts_and_audit_every_change,
    a_stage_move_is_refused_when_the_release_moved_meanwhile_and_approvals_need_staging,
    a_lease_has_one_holder_until_it_lapses_or_is_given_up,
    a_fence_admits_many_shared_holds_or_one_exclusive,
    a_session_closed_on_a_node_the_device_left_does_not_mark_it_gone,
    a_batch_of_reports_merges_each_device_in_order_and_writes_its_live_row,
);
