//! The update machine and admission, on plain data.

use ferry_shared::manifest::{Lineage, MANIFEST_SCHEMA};
use ferry_shared::sign::{Keyring, SignedRelease};
use ferry_shared::variant_choice::DeviceProfile;
use ferry_shared::wire::{
    DesiredRelease, DesiredState, ErrorKind, EventKind, InstallError, UpdatePhase,
};
use ferry_shared::{
    Accelerator, Digest, ModelName, Release, SecretKey, Target as Platform, Variant, Version,
};

use super::*;

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

fn model() -> ModelName {
    "m".parse().unwrap()
}

fn target(version: &str) -> Admitted {
    super::simulated::admitted(&v(version))
}

fn error(version: &str, kind: ErrorKind) -> InstallError {
    InstallError {
        version: v(version),
        kind,
        message: "boom".into(),
        at: 0,
    }
}

fn slots(current: &str, previous: Option<&str>) -> Slots {
    Slots {
        current: Some(v(current)),
        previous: previous.map(v),
    }
}

fn on_v1() -> Updater {
    Updater::new(model(), slots("1.0.0", None), None, Vec::new(), None)
}

/// Drives a full successful install of `version` and returns the emitted events.
fn install(u: &mut Updater, version: &str) {
    let actions = u.step(Event::Desired(Desire::Run(target(version))));
    assert_eq!(actions, vec![Effect::Download(target(version))]);
    assert_eq!(
        u.step(Event::Downloaded(v(version))),
        vec![Effect::Switch(v(version))]
    );
    let prev = u.slots().current.clone();
    let after = Slots {
        current: Some(v(version)),
        previous: prev,
    };
    assert_eq!(
        u.step(Event::Switched(after)),
        vec![Effect::CheckHealth(v(version))]
    );
}

#[test]
fn a_new_version_is_staged_switched_checked_and_committed() {
    let mut u = on_v1();
    install(&mut u, "2.0.0");
    assert_eq!(u.report().phase, UpdatePhase::Probation(v("2.0.0")));
    let actions = u.step(Event::HealthPassed);
    assert_eq!(
        actions,
        vec![
            Effect::Commit,
            Effect::Emit(EventKind::Installed {
                from: Some(v("1.0.0")),
                to: v("2.0.0")
            })
        ]
    );
    let report = u.report();
    assert_eq!(report.active, Some(v("2.0.0")));
    assert_eq!(report.previous, Some(v("1.0.0")));
    assert_eq!(report.phase, UpdatePhase::Idle);
    assert!(
        u.step(Event::Desired(Desire::Run(target("2.0.0"))))
            .is_empty(),
        "nothing to do"
    );
}

#[test]
fn a_failed_health_check_rolls_back_and_holds_the_version() {
    let mut u = on_v1();
    install(&mut u, "2.0.0");
    assert_eq!(
        u.step(Event::HealthFailed(error("2.0.0", ErrorKind::HealthCheck))),
        vec![Effect::RollBack]
    );
    let actions = u.step(Event::RolledBack(slots("1.0.0", None)));
    assert!(
        matches!(
            &actions[..],
            [Effect::Emit(EventKind::HealthRollback { .. })]
        ),
        "{actions:?}"
    );
    assert_eq!(u.report().active, Some(v("1.0.0")));
    assert!(matches!(u.report().phase, UpdatePhase::Held { .. }));
    // The coordinator repeating its wish does not start a loop.
    assert!(
        u.step(Event::Desired(Desire::Run(target("2.0.0"))))
            .is_empty()
    );
    // A new version clears the hold.
    assert_eq!(
        u.step(Event::Desired(Desire::Run(target("2.0.1")))),
        vec![Effect::Download(target("2.0.1"))]
    );
    assert!(u.holds().is_empty());
}

/// Issue 14, finding 6: after a cut, every retry failed with "not connected" and that
/// replaced the failure that began it (a cut mid-chunk) in what the fleet was shown.
#[test]
fn a_retry_without_a_link_does_not_hide_the_failure_that_began_the_streak() {
    let mut u = on_v1();
    u.step(Event::Desired(Desire::Run(target("2.0.0"))));
    let root = InstallError {
        message: "chunk 53: connection lost".into(),
        ..error("2.0.0", ErrorKind::Download)
    };
    u.step(Event::DownloadFailed {
        error: root.clone(),
        retry: Retry::Later,
    });
    u.step(Event::RetryDue);
    let offline = InstallError {
        message: NOT_CONNECTED.into(),
        ..error("2.0.0", ErrorKind::Download)
    };
    let again = u.step(Event::DownloadFailed {
        error: offline.clone(),
        retry: Retry::Offline,
    });
    assert_eq!(again, vec![Effect::RetryAfter(2)], "nothing new to report");
    assert_eq!(u.last_error(), Some(&root));
    assert!(matches!(
        u.report().phase,
        UpdatePhase::Retrying { attempts: 2, .. }
    ));
    // With nothing before it, not being connected is the failure to report.
    let mut fresh = on_v1();
    fresh.step(Event::Desired(Desire::Run(target("2.0.0"))));
    fresh.step(Event::DownloadFailed {
        error: offline.clone(),
        retry: Retry::Offline,
    });
    assert_eq!(fresh.last_error(), Some(&offline));
}

#[test]
fn retryable_failures_back_off_and_retry_and_report_once() {
    let mut u = on_v1();
    u.step(Event::Desired(Desire::Run(target("2.0.0"))));
    let failure = || Event::DownloadFailed {
        error: error("2.0.0", ErrorKind::Download),
        retry: Retry::Later,
    };
    let first = u.step(failure());
    assert!(
        matches!(
            &first[..],
            [
                Effect::Emit(EventKind::InstallFailed(_)),
                Effect::RetryAfter(1)
            ]
        ),
        "{first:?}"
    );
    assert_eq!(
        u.step(Event::RetryDue),
        vec![Effect::Download(target("2.0.0"))]
    );
    assert_eq!(
        u.step(failure()),
        vec![Effect::RetryAfter(2)],
        "the same error is not re-reported"
    );
    assert!(matches!(
        u.report().phase,
        UpdatePhase::Retrying { attempts: 2, .. }
    ));
    assert_eq!(
        u.report().active,
        Some(v("1.0.0")),
        "the device stays on its version"
    );
}

#[test]
fn a_permanent_failure_holds_without_retrying() {
    let mut u = on_v1();
    u.step(Event::Desired(Desire::Run(target("2.0.0"))));
    let actions = u.step(Event::DownloadFailed {
        error: error("2.0.0", ErrorKind::Integrity),
        retry: Retry::Never,
    });
    assert!(
        matches!(&actions[..], [Effect::Emit(EventKind::InstallFailed(_))]),
        "{actions:?}"
    );
    assert!(matches!(u.report().phase, UpdatePhase::Held { .. }));
}

#[test]
fn a_newer_wish_during_a_download_wins_when_it_finishes() {
    let mut u = on_v1();
    u.step(Event::Desired(Desire::Run(target("2.0.0"))));
    assert!(
        u.step(Event::Desired(Desire::Run(target("3.0.0"))))
            .is_empty(),
        "one download at a time"
    );
    assert_eq!(
        u.step(Event::Downloaded(v("2.0.0"))),
        vec![Effect::Download(target("3.0.0"))]
    );
}

#[test]
fn an_unusable_release_is_refused_reported_and_held() {
    let mut u = on_v1();
    let actions = u.step(Event::Desired(Desire::Unusable(error(
        "2.0.0",
        ErrorKind::Signature,
    ))));
    assert!(matches!(
        &actions[..],
        [Effect::Emit(EventKind::InstallFailed(_))]
    ));
    assert!(
        u.step(Event::Desired(Desire::Unusable(error(
            "2.0.0",
            ErrorKind::Signature
        ))))
        .is_empty()
    );
    assert_eq!(u.report().active, Some(v("1.0.0")));
}

#[test]
fn an_operator_rollback_is_respected() {
    let mut u = on_v1();
    install(&mut u, "2.0.0");
    u.step(Event::HealthPassed);
    let holds = vec![Hold {
        version: v("2.0.0"),
        reason: "rolled back locally".into(),
    }];
    let actions = u.step(Event::SlotsChanged {
        slots: slots("1.0.0", Some("2.0.0")),
        holds,
    });
    assert!(
        actions.is_empty(),
        "the daemon must not undo an operator's rollback: {actions:?}"
    );
    assert_eq!(u.report().active, Some(v("1.0.0")));
}

#[test]
fn an_operator_rollback_does_not_release_a_health_check_hold() {
    // The bug the demo found: the device failed 3.0.0's health check and held it; then an
    // operator rolled back 2.0.0 -> 1.0.0 on the device. Both holds must stand, or the
    // daemon reinstalls the known-bad 3.0.0.
    let mut u = Updater::new(
        model(),
        slots("2.0.0", Some("1.0.0")),
        None,
        Vec::new(),
        None,
    );
    install(&mut u, "3.0.0");
    u.step(Event::HealthFailed(error("3.0.0", ErrorKind::HealthCheck)));
    u.step(Event::RolledBack(slots("2.0.0", Some("1.0.0"))));
    let mut holds = u.holds().to_vec();
    holds.push(Hold {
        version: v("2.0.0"),
        reason: "rolled back locally".into(),
    });
    let actions = u.step(Event::SlotsChanged {
        slots: slots("1.0.0", Some("2.0.0")),
        holds,
    });
    assert!(actions.is_empty(), "{actions:?}");
    assert!(
        u.step(Event::Desired(Desire::Run(target("3.0.0"))))
            .is_empty()
    );
    assert!(matches!(u.report().phase, UpdatePhase::Held { .. }));
    // The 2.0.0 hold ended when the coordinator (again) asked for 3.0.0; 3.0.0's stands.
    assert_eq!(u.holds().len(), 1);
}

#[test]
fn returning_to_the_previous_version_needs_no_download_decision_beyond_stage() {
    let mut u = Updater::new(
        model(),
        slots("2.0.0", Some("1.0.0")),
        None,
        Vec::new(),
        None,
    );
    // Staging an installed version is the daemon's no-op; the machine treats it uniformly.
    assert_eq!(
        u.step(Event::Desired(Desire::Run(target("1.0.0")))),
        vec![Effect::Download(target("1.0.0"))]
    );
}

/// On 1.0.0 (desired), with `candidate` staged beside it as the coordinator asks.
fn shadowing(candidate: &str) -> Updater {
    let mut u = on_v1();
    assert!(
        u.step(Event::Desired(Desire::Run(target("1.0.0"))))
            .is_empty()
    );
    assert_eq!(
        u.step(Event::Candidate(Desire::Run(target(candidate)))),
        vec![Effect::Download(target(candidate))]
    );
    assert_eq!(u.report().phase, UpdatePhase::Fetching(v(candidate)));
    assert_eq!(
        u.step(Event::Downloaded(v(candidate))),
        vec![Effect::SetCandidate(Some(v(candidate)))]
    );
    assert!(
        u.step(Event::CandidateSet(Ok(Some(v(candidate)))))
            .is_empty()
    );
    u
}

#[test]
fn a_candidate_is_staged_beside_current_without_switching() {
    let u = shadowing("2.0.0");
    let report = u.report();
    assert_eq!(report.active, Some(v("1.0.0")));
    assert_eq!(report.candidate, Some(v("2.0.0")));
    assert_eq!(report.phase, UpdatePhase::Idle);
    assert_eq!(u.slots(), &slots("1.0.0", None), "nothing switched");
}

#[test]
fn a_candidate_the_coordinator_drops_is_removed() {
    let mut u = shadowing("2.0.0");
    assert_eq!(
        u.step(Event::Candidate(Desire::Nothing)),
        vec![Effect::SetCandidate(None)]
    );
    assert!(u.step(Event::CandidateSet(Ok(None))).is_empty());
    assert_eq!(u.report().candidate, None);
}

#[test]
fn a_candidate_that_becomes_desired_is_switched_to_and_its_link_goes() {
    let mut u = shadowing("2.0.0");
    // The shadow wave gives way to a serving one: run 2.0.0, no candidate.
    assert_eq!(
        u.step(Event::Desired(Desire::Run(target("2.0.0")))),
        vec![Effect::Download(target("2.0.0"))],
        "staging an installed version is the daemon's no-op"
    );
    assert!(u.step(Event::Candidate(Desire::Nothing)).is_empty());
    assert_eq!(
        u.step(Event::Downloaded(v("2.0.0"))),
        vec![Effect::Switch(v("2.0.0"))]
    );
    u.step(Event::Switched(slots("2.0.0", Some("1.0.0"))));
    let actions = u.step(Event::HealthPassed);
    assert_eq!(actions[0], Effect::Commit);
    assert_eq!(actions.last(), Some(&Effect::SetCandidate(None)));
    u.step(Event::CandidateSet(Ok(None)));
    let report = u.report();
    assert_eq!((report.active, report.candidate), (Some(v("2.0.0")), None));
}

#[test]
fn the_desired_version_goes_before_the_candidate() {
    let mut u = on_v1();
    u.step(Event::Desired(Desire::Run(target("2.0.0"))));
    assert!(
        u.step(Event::Candidate(Desire::Run(target("3.0.0"))))
            .is_empty(),
        "busy installing 2.0.0"
    );
    u.step(Event::Downloaded(v("2.0.0")));
    u.step(Event::Switched(slots("2.0.0", Some("1.0.0"))));
    let actions = u.step(Event::HealthPassed);
    assert_eq!(actions.last(), Some(&Effect::Download(target("3.0.0"))));
}

#[test]
fn an_unusable_or_failing_candidate_is_held_and_reported() {
    let mut u = on_v1();
    u.step(Event::Desired(Desire::Run(target("1.0.0"))));
    let actions = u.step(Event::Candidate(Desire::Unusable(error(
        "2.0.0",
        ErrorKind::Signature,
    ))));
    assert!(
        matches!(actions.as_slice(), [Effect::Emit(EventKind::InstallFailed(e))] if e.version == v("2.0.0")),
        "{actions:?}"
    );
    assert_eq!(u.holds().len(), 1);
    // A download that keeps failing is retried while wanted, and stops when not.
    let mut u = on_v1();
    u.step(Event::Desired(Desire::Run(target("1.0.0"))));
    u.step(Event::Candidate(Desire::Run(target("2.0.0"))));
    let actions = u.step(Event::DownloadFailed {
        error: error("2.0.0", ErrorKind::Download),
        retry: Retry::Later,
    });
    assert_eq!(actions.last(), Some(&Effect::RetryAfter(1)));
    assert!(u.step(Event::Candidate(Desire::Nothing)).is_empty());
    assert!(u.step(Event::RetryDue).is_empty(), "nothing to retry");
    // Pointing the link fails (disk): held, reported, not retried in a loop.
    let mut u = on_v1();
    u.step(Event::Desired(Desire::Run(target("1.0.0"))));
    u.step(Event::Candidate(Desire::Run(target("2.0.0"))));
    u.step(Event::Downloaded(v("2.0.0")));
    let actions = u.step(Event::CandidateSet(Err(error("2.0.0", ErrorKind::Disk))));
    assert!(
        matches!(
            actions.as_slice(),
            [Effect::Emit(EventKind::InstallFailed(_))]
        ),
        "{actions:?}"
    );
    assert!(u.holds().iter().any(|h| h.version == v("2.0.0")));
}

fn signed_desired(key: &SecretKey, name: &str, version: &str, accel: Accelerator) -> DesiredState {
    expiring_desired(key, name, version, accel, 1000)
}

fn expiring_desired(
    key: &SecretKey,
    name: &str,
    version: &str,
    accel: Accelerator,
    expires: u64,
) -> DesiredState {
    let release = Release {
        schema: MANIFEST_SCHEMA,
        name: name.parse().unwrap(),
        version: v(version),
        revision: 1,
        expires,
        created_at: 0,
        created_by: "t".into(),
        variants: vec![Variant {
            target: Platform::Any,
            accelerator: accel,
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
    let signed = SignedRelease::sign(&release, key).unwrap();
    DesiredState {
        model: model(),
        alias: "prod".parse().unwrap(),
        release: Some(DesiredRelease {
            version: v(version),
            envelope: signed.envelope_bytes,
        }),
        candidate: None,
        trust: None,
    }
}

#[test]
fn admission_checks_signature_identity_and_hardware() {
    let key = SecretKey::from_seed(&[1; 32]);
    let mut trusted = Trust::Keys(Keyring::new([key.public()]));
    let cpu = DeviceProfile {
        target: "x86_64-unknown-linux-gnu".into(),
        accelerator: Accelerator::Cpu,
        facts: Default::default(),
    };
    let ok = signed_desired(&key, "m", "2.0.0", Accelerator::Cpu);
    assert!(matches!(
        admit(&ok, &model(), &mut trusted, &cpu, 0).0,
        Desire::Run(_)
    ));

    let stranger = signed_desired(
        &SecretKey::from_seed(&[2; 32]),
        "m",
        "2.0.0",
        Accelerator::Cpu,
    );
    assert!(matches!(
        admit(&stranger, &model(), &mut trusted, &cpu, 0).0,
        Desire::Unusable(InstallError {
            kind: ErrorKind::Signature,
            ..
        })
    ));

    let other_model = signed_desired(&key, "other", "2.0.0", Accelerator::Cpu);
    assert!(matches!(
        admit(&other_model, &model(), &mut trusted, &cpu, 0).0,
        Desire::Unusable(InstallError {
            kind: ErrorKind::Signature,
            ..
        })
    ));

    let gpu_only = signed_desired(&key, "m", "2.0.0", Accelerator::Gpu);
    assert!(matches!(
        admit(&gpu_only, &model(), &mut trusted, &cpu, 0).0,
        Desire::Unusable(InstallError {
            kind: ErrorKind::IncompatibleHardware,
            ..
        })
    ));

    let mut lying = ok.clone();
    if let Some(r) = lying.release.as_mut() {
        r.version = v("9.0.0");
    }
    assert!(matches!(
        admit(&lying, &model(), &mut trusted, &cpu, 0).0,
        Desire::Unusable(_)
    ));

    // A release past its own expiry is refused, with or without root metadata.
    let stale = expiring_desired(&key, "m", "2.0.0", Accelerator::Cpu, 50);
    assert!(matches!(
        admit(&stale, &model(), &mut trusted, &cpu, 49).0,
        Desire::Run(_)
    ));
    match admit(&stale, &model(), &mut trusted, &cpu, 50).0 {
        Desire::Unusable(InstallError {
            kind: ErrorKind::Signature,
            message,
            ..
        }) => assert!(message.contains("expired"), "{message}"),
        other => panic!("an expired release was admitted: {other:?}"),
    }

    // A candidate is checked exactly like the version to run.
    let mut shadow = ok.clone();
    shadow.candidate = stranger.release.clone();
    assert!(matches!(
        admit(&shadow, &model(), &mut trusted, &cpu, 0),
        (
            Desire::Run(_),
            Desire::Unusable(InstallError {
                kind: ErrorKind::Signature,
                ..
            })
        )
    ));
}

fn window() -> ferry_shared::wire::DeferReason {
    ferry_shared::wire::DeferReason::Window { opens: Some(5000) }
}

fn gate(closed: Option<ferry_shared::wire::DeferReason>, downloads_wait: bool, now: u64) -> Event {
    Event::Gate {
        closed,
        downloads_wait,
        now,
    }
}

#[test]
fn outside_its_window_a_device_downloads_but_switches_only_when_the_window_opens() {
    let mut u = on_v1();
    assert!(u.step(gate(Some(window()), false, 100)).is_empty());
    assert_eq!(
        u.step(Event::Desired(Desire::Run(target("2.0.0")))),
        vec![Effect::Download(target("2.0.0"))]
    );
    // Downloaded and verified: no switch yet, and the device says why.
    assert!(u.step(Event::Downloaded(v("2.0.0"))).is_empty());
    assert_eq!(u.deferral(), Some((v("2.0.0"), window(), 100)));
    assert_eq!(u.report().phase, UpdatePhase::Fetching(v("2.0.0")));
    assert!(
        u.is_settled(),
        "a local rollback may still happen meanwhile"
    );
    // Still closed for the same reason: the deferral keeps its start.
    assert!(u.step(gate(Some(window()), false, 200)).is_empty());
    assert_eq!(u.deferral().map(|d| d.2), Some(100));
    // The window opens: the switch goes ahead at once.
    assert_eq!(
        u.step(gate(None, false, 300)),
        vec![Effect::Switch(v("2.0.0"))]
    );
    assert_eq!(u.deferral(), None);
}

#[test]
fn with_downloads_in_the_window_only_nothing_moves_until_it_opens() {
    let mut u = on_v1();
    u.step(gate(Some(window()), true, 100));
    assert!(
        u.step(Event::Desired(Desire::Run(target("2.0.0"))))
            .is_empty()
    );
    assert_eq!(u.deferral(), Some((v("2.0.0"), window(), 100)));
    assert_eq!(u.report().phase, UpdatePhase::Idle);
    assert_eq!(
        u.step(gate(None, true, 300)),
        vec![Effect::Download(target("2.0.0"))]
    );
    assert_eq!(
        u.step(Event::Downloaded(v("2.0.0"))),
        vec![Effect::Switch(v("2.0.0"))]
    );
}

#[test]
fn a_lock_defers_the_switch_but_never_a_rollback_and_a_new_target_replaces_the_wait() {
    let locked = ferry_shared::wire::DeferReason::Locked {
        until: Some(900),
        by: "surgery".into(),
    };
    let mut u = on_v1();
    install(&mut u, "2.0.0");
    // Locked during the health check: the rollback of a failed check still happens.
    u.step(gate(Some(locked.clone()), false, 100));
    assert_eq!(
        u.step(Event::HealthFailed(error("2.0.0", ErrorKind::HealthCheck))),
        vec![Effect::RollBack]
    );
    u.step(Event::RolledBack(slots("1.0.0", Some("2.0.0"))));
    // 3.0.0 comes while locked: downloaded, deferred; then 3.1.0 is asked for instead.
    assert_eq!(
        u.step(Event::Desired(Desire::Run(target("3.0.0")))),
        vec![Effect::Download(target("3.0.0"))]
    );
    assert!(u.step(Event::Downloaded(v("3.0.0"))).is_empty());
    assert_eq!(u.deferral().map(|d| d.0), Some(v("3.0.0")));
    assert_eq!(
        u.step(Event::Desired(Desire::Run(target("3.1.0")))),
        vec![Effect::Download(target("3.1.0"))]
    );
}

fn set_reason() -> ferry_shared::wire::DeferReason {
    ferry_shared::wire::DeferReason::UpdateSet {
        waiting_for: "detector".parse().unwrap(),
    }
}

#[test]
fn in_an_update_set_a_passed_check_waits_for_the_set_to_commit() {
    let mut u = on_v1();
    u.join_update_set();
    assert_eq!(u.set_stage(), update_set::Stage::Settled);
    u.step(gate(Some(set_reason()), false, 100));
    u.step(Event::Desired(Desire::Run(target("2.0.0"))));
    assert_eq!(u.set_stage(), update_set::Stage::Preparing);
    assert!(u.step(Event::Downloaded(v("2.0.0"))).is_empty());
    assert_eq!(u.set_stage(), update_set::Stage::Ready);
    assert_eq!(u.deferral(), Some((v("2.0.0"), set_reason(), 100)));
    assert_eq!(
        u.step(gate(None, false, 200)),
        vec![Effect::Switch(v("2.0.0"))]
    );
    u.step(Event::Switched(slots("2.0.0", Some("1.0.0"))));
    assert_eq!(u.set_stage(), update_set::Stage::Switching);
    // Passed: still in probation, nothing committed.
    assert!(u.step(Event::HealthPassed).is_empty());
    assert_eq!(u.set_stage(), update_set::Stage::Passed);
    assert_eq!(u.report().phase, UpdatePhase::Probation(v("2.0.0")));
    assert!(!u.is_settled());
    assert_eq!(
        u.step(Event::SetCommitted),
        vec![
            Effect::Commit,
            Effect::Emit(EventKind::Installed {
                from: Some(v("1.0.0")),
                to: v("2.0.0")
            })
        ]
    );
    assert_eq!(u.set_stage(), update_set::Stage::Settled);
}

#[test]
fn rolled_back_with_its_set_a_version_is_not_held_and_waits_to_switch_again() {
    let mut u = on_v1();
    u.join_update_set();
    install(&mut u, "2.0.0");
    assert!(u.step(Event::HealthPassed).is_empty());
    assert_eq!(u.step(Event::SetAborted), vec![Effect::RollBack]);
    assert_eq!(u.set_stage(), update_set::Stage::RollingBack);
    // Back on 1.0.0: no hold, no failure reported; 2.0.0 is fetched (found on disk) to wait.
    let actions = u.step(Event::RolledBack(slots("1.0.0", Some("2.0.0"))));
    assert_eq!(actions, vec![Effect::Download(target("2.0.0"))]);
    assert!(u.holds().is_empty());
    assert_eq!(u.last_error(), None);
    // Its own failure is still its own: held, reported.
    let mut u = on_v1();
    u.join_update_set();
    install(&mut u, "2.0.0");
    u.step(Event::HealthFailed(error("2.0.0", ErrorKind::HealthCheck)));
    u.step(Event::RolledBack(slots("1.0.0", Some("2.0.0"))));
    assert_eq!(u.set_stage(), update_set::Stage::Held);
    // A late SetAborted for a member already back does nothing.
    assert!(u.step(Event::SetAborted).is_empty());
}
