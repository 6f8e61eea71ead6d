//! The console in a real browser, through a whole story on real processes: an operator signs
//! in and starts a rollout with a shadow wave from the form (after a dry run), watches it wait
//! for approval; an approver approves it; the release fails its health checks, the gate trips
//! and the rollout rolls back, all as the page shows it; a device's page shows the rollback,
//! the audit page the chain intact with who did what; a viewer sees no action anywhere and a
//! request forged from the page with its token is refused. Every page is saved as a screenshot
//! under `target/console/`, also at tablet width and in dark mode.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::{AuditVerification, TokenRole};
use ferry_shared::rollout::Phase;
use ferry_tests::browser::{Browser, Page};
use ferry_tests::{Fleet, MODEL, model_bytes};

const MIB: usize = 1024 * 1024;
const T: Duration = Duration::from_secs(90);

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../console")
}

fn sign_in(page: &Page, token: &str, role: &str) -> Result<()> {
    if page.has("#sign-out")? {
        page.click("#sign-out")?;
    }
    page.wait_for_element("#login:not([hidden])")?;
    page.fill("#token", token)?;
    // By keyboard: Enter submits the sign-in form.
    page.press("Enter")?;
    page.wait_for(
        &format!("signed in as {role}"),
        &format!(
            "document.body.dataset.role === '{role}' && document.body.dataset.loaded === 'true'"
        ),
        T,
    )?;
    Ok(())
}

/// Gives the open action dialog its reason and confirms it.
fn confirm(page: &Page, reason: &str) -> Result<()> {
    page.fill("#dialog-reason", reason)?;
    page.click("#dialog-confirm")
}

/// Clicks the action button `button`, then gives its dialog `reason` and confirms it.
fn act(page: &Page, button: &str, reason: &str) -> Result<()> {
    page.click(button)?;
    confirm(page, reason)
}

fn actions(page: &Page, container: &str) -> Result<Vec<String>> {
    page.eval(&format!(
        "[...document.querySelectorAll('{container} [data-action]')].map(b => b.dataset.action)"
    ))
}

#[test]
fn an_operator_and_an_approver_run_a_rollout_from_the_console_and_a_viewer_can_only_look()
-> Result<()> {
    let fleet = Fleet::start(3, None)?;
    fleet.publish("1.0.0", &model_bytes(1, MIB, true))?;
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", T)?;
    // 2.0.0 installs and stages fine, but fails every health check once it serves.
    let lineage = "code_commit = \"9f2c1e4\"\nparents = [\"1.0.0\"]\n[dataset]\nid = \"street-scenes\"\nversion = \"2026-11\"\nhash = \"sha256:ab\"\n[metrics]\naccuracy = 0.91\n";
    fleet.publish_with_meta("2.0.0", &model_bytes(2, MIB, false), Some(lineage))?;
    let operator = fleet
        .coordinator
        .create_token("olivia", TokenRole::Operator)?;
    let approver = fleet
        .coordinator
        .create_token("april", TokenRole::Approver)?;
    let viewer = fleet.coordinator.token("viewer")?;
    let dir = shots();
    let _ = std::fs::remove_dir_all(&dir);

    let browser = Browser::launch(&fleet.dir, 1366, 768)?;
    let page = browser.open(&format!("http://{}/", fleet.coordinator.http))?;

    // The sign-in screen: no data, no "loading…".
    page.wait_for_element("#login:not([hidden])")?;
    ensure!(
        page.text("#updated")?.is_empty(),
        "the sign-in screen says something is loading"
    );
    ensure!(!page.eval::<bool>("document.body.dataset.loaded === 'true'")?);
    page.screenshot(&dir, "sign-in")?;
    // A wrong token is refused with the API's words.
    page.fill("#token", "fy_not_a_token")?;
    page.press("Enter")?;
    page.wait_for(
        "the refusal",
        "document.getElementById('login-error').innerText.includes('refused')",
        T,
    )?;

    // The operator: the fleet page, then a rollout from the form.
    sign_in(&page, &operator, "operator")?;
    ensure!(page.text("#devices-total")? == "3");
    ensure!(page.text("#who-name")?.contains("olivia (operator)"));
    page.screenshot(&dir, "fleet")?;

    page.click("a[data-tab=rollouts]")?;
    page.follow("#new-rollout", "#rollout-form")?;
    page.eval::<bool>(
        "(() => { const v = document.getElementById('version'); v.value = '2.0.0'; v.dispatchEvent(new Event('change')); return v.value === '2.0.0'; })()",
    )?;
    // Two waves: a shadow wave over the whole cohort, then serving it all after approval.
    while page.eval::<usize>("document.querySelectorAll('#waves tr').length")? > 2 {
        page.click("#waves tr:last-child .remove")?;
    }
    page.fill("#waves tr:nth-child(1) .percent", "100")?;
    page.fill("#waves tr:nth-child(1) .bake", "1")?;
    page.fill("#waves tr:nth-child(2) .percent", "100")?;
    page.fill("#waves tr:nth-child(2) .bake", "1")?;
    let (shadow, approval): (bool, bool) = page.eval(
        "[document.querySelector('#waves tr:nth-child(1) .shadow').checked, document.querySelector('#waves tr:nth-child(2) .approval').checked]",
    )?;
    if !shadow {
        page.click("#waves tr:nth-child(1) .shadow")?;
    }
    if approval {
        page.click("#waves tr:nth-child(2) .approval")?;
    }
    page.click("#waves tr:nth-child(2) .approval")?;
    page.fill("#limit-InstallFailures", "0")?;
    page.fill("#limit-HealthFailures", "0")?;
    page.fill("#rollout-id", "console-2")?;
    // The dry run: whom each wave reaches, who could not take it.
    page.click("#dry-run")?;
    page.wait_for_element("#dry-run-result")?;
    let reach: Vec<String> = page.eval(
        "[...document.querySelectorAll('#dry-run-result tr[data-reach]')].map(r => r.dataset.reach)",
    )?;
    ensure!(reach == ["3", "3"], "dry run reaches {reach:?}");
    ensure!(page.has("#no-misfits")?);
    ensure!(
        fleet
            .coordinator
            .get("/api/v1/rollouts/console-2", "admin")?
            .status
            == 404,
        "the dry run created a rollout"
    );
    // Starting without a reason is refused on the page; with one it starts.
    page.click("#start-rollout")?;
    page.wait_for(
        "the reason asked for",
        "document.getElementById('form-error').innerText.includes('reason')",
        T,
    )?;
    page.fill("#reason", "console story: shadow first")?;
    // A plan the API refuses: the page shows the API's own words, and nothing starts.
    page.fill("#waves tr:nth-child(1) .bake", "99999999")?;
    page.click("#start-rollout")?;
    page.wait_for(
        "the API's refusal",
        "document.getElementById('form-error').innerText.includes('bakes at most')",
        T,
    )?;
    ensure!(
        fleet
            .coordinator
            .get("/api/v1/rollouts/console-2", "admin")?
            .status
            == 404
    );
    page.fill("#waves tr:nth-child(1) .bake", "1")?;
    page.screenshot(&dir, "rollout-form")?;
    page.click("#start-rollout")?;
    page.wait_for_element("#rollout-summary")?;
    ensure!(page.eval::<String>("location.hash")? == "#/rollouts/console-2");

    // Watching it: the shadow wave stages 2.0.0 everywhere, then the next wave waits.
    page.wait_for(
        "the rollout to wait for approval",
        "document.getElementById('rollout-summary').dataset.phase === 'AwaitingApproval'",
        T,
    )?;
    ensure!(page.text("[data-count=shadowing]")? == "3");
    // Behind a count, its devices: the three staging 2.0.0, each linking to its page.
    page.follow("[data-count=shadowing] a", "#standing-devices")?;
    ensure!(
        page.eval::<String>("document.getElementById('standing-devices').dataset.standing")?
            == "shadowing"
    );
    let staged: Vec<String> = page.eval(
        "[...document.querySelectorAll('#standing-devices tr[data-listed] td:nth-child(4)')].map(td => td.innerText)",
    )?;
    ensure!(staged == ["2.0.0"; 3], "{staged:?}");
    page.screenshot(&dir, "rollout-devices-shadowing")?;
    // An operator starts rollouts but does not let them go wider.
    let offered = actions(&page, "#rollout-actions")?;
    ensure!(
        offered == ["pause", "abort", "rollback"],
        "an operator is offered {offered:?}"
    );
    page.screenshot(&dir, "rollout-awaiting-approval")?;
    // The operator pauses it: the approver will find it paused.
    act(&page, "[data-action=pause]", "hold until the review")?;
    page.wait_for_element("#rollout-actions [data-action=resume]")?;
    ensure!(page.text("#rollout-summary")?.contains("(paused)"));

    // The approver approves; Escape closes the dialog first and gives the focus back.
    sign_in(&page, &approver, "approver")?;
    page.wait_for_element("#rollout-actions")?;
    let offered = actions(&page, "#rollout-actions")?;
    ensure!(offered == ["approve"], "an approver is offered {offered:?}");
    page.click("[data-action=approve]")?;
    page.wait_for_element("dialog[open]")?;
    page.press("Escape")?;
    page.wait_for(
        "the dialog to close and the focus to return",
        "!document.querySelector('dialog[open]') && document.activeElement.dataset.action === 'approve'",
        T,
    )?;
    page.press("Enter")?;
    page.wait_for_element("dialog[open]")?;
    page.click("#dialog-confirm")?;
    page.wait_for(
        "the reason asked for",
        "document.getElementById('dialog-error').innerText.includes('reason')",
        T,
    )?;
    confirm(&page, "shadow metrics look fine")?;
    // Refused by the API while paused: its words in the dialog, nothing changed.
    page.wait_for(
        "the API's refusal",
        "document.getElementById('dialog-error').innerText.includes('cannot approve')",
        T,
    )?;
    page.click("#dialog-cancel")?;
    ensure!(fleet.rollout("console-2")?.phase == Phase::AwaitingApproval);
    // The operator resumes it; the approver approves.
    sign_in(&page, &operator, "operator")?;
    act(
        &page,
        "#rollout-actions [data-action=resume]",
        "review done",
    )?;
    page.wait_for_element("#rollout-actions [data-action=pause]")?;
    sign_in(&page, &approver, "approver")?;
    act(
        &page,
        "#rollout-actions [data-action=approve]",
        "shadow metrics look fine",
    )?;
    // 2.0.0 now serves, fails its health checks, the gate trips, the rollout rolls back.
    page.wait_for(
        "the rollout to roll back",
        "document.getElementById('rollout-summary').dataset.phase === 'RolledBack'",
        T,
    )?;
    ensure!(page.text("#rollout-reason")?.contains("HealthFailures"));
    ensure!(
        page.eval::<bool>(
            "document.querySelector('[data-gate=HealthFailures]').dataset.verdict === 'Fail'"
        )?,
        "the tripped gate is not shown failing"
    );
    let samples: u64 =
        page.eval("Number(document.querySelector('#view svg[data-samples]').dataset.samples)")?;
    ensure!(samples > 0, "the gate chart has no sample");
    ensure!(
        actions(&page, "#rollout-actions")?.is_empty(),
        "actions on an ended rollout"
    );
    page.screenshot(&dir, "rollout-rolled-back")?;
    // The devices where 2.0.0 failed its health check, as many as the count says.
    page.follow(
        "[data-count=health_failed] a",
        "#standing-devices[data-standing=health_failed]",
    )?;
    let failed: u64 =
        page.eval("Number(document.querySelector('[data-count=health_failed]').innerText)")?;
    let rows: u64 =
        page.eval("document.querySelectorAll('#standing-devices tr[data-listed]').length")?;
    ensure!(
        failed >= 1 && rows == failed,
        "{rows} listed, {failed} counted"
    );
    let view = fleet.rollout("console-2")?;
    ensure!(view.phase == Phase::RolledBack, "{view:?}");

    // A device: back on 1.0.0, its health-check rollback of 2.0.0 listed, what it serves.
    fleet.serve_requests(40, |_| 5)?;
    page.click("a[data-tab=devices]")?;
    page.wait_for_element("#devices tr[data-device] a")?;
    page.follow("#devices tr[data-device] a", "#device-models")?;
    page.wait_for(
        "the device page to show the rollback",
        "document.querySelector('[data-event=HealthRollback]') && document.querySelector('[data-slot=current]').innerText === '1.0.0'",
        T,
    )?;
    ensure!(
        !page.has("[data-action=revoke]")?,
        "an approver may not revoke devices"
    );
    page.screenshot(&dir, "device")?;

    // The audit trail: who did what, the chain intact, its head as the API walks it.
    page.click("a[data-tab=audit]")?;
    page.wait_for(
        "the chain's walk",
        "document.getElementById('chain-status')",
        T,
    )?;
    ensure!(
        page.eval::<bool>("document.getElementById('chain-status').dataset.intact === 'true'")?
    );
    let walked: AuditVerification = fleet.coordinator.ctl_json(&["audit", "--verify"])?;
    let head = walked.head.context("an empty trail")?;
    let shown = page.text("#chain-head")?;
    let (seq, _) = shown.split_once(':').context("no head shown")?;
    ensure!(
        seq.parse::<u64>()? >= head.seq.saturating_sub(5),
        "head {shown} vs {head}"
    );
    let trail = page.text("#audit-entries")?;
    for expected in [
        "olivia (operator)",
        "rollout.create",
        "april (approver)",
        "shadow metrics look fine",
        "rollout.auto-rollback",
    ] {
        ensure!(
            trail.contains(expected),
            "the trail lacks {expected}:\n{trail}"
        );
    }
    // Filtered on the coordinator.
    page.fill("#filter-actor", "april")?;
    page.press("Enter")?;
    page.wait_for(
        "the filtered trail",
        "location.hash.includes('actor=april') && [...document.querySelectorAll('#audit-entries tr[data-seq]')].length > 0",
        T,
    )?;
    let actors: Vec<String> = page.eval(
        "[...document.querySelectorAll('#audit-entries tr[data-seq] td:nth-child(3)')].map(td => td.innerText)",
    )?;
    ensure!(actors.iter().all(|a| a.contains("april")), "{actors:?}");
    page.screenshot(&dir, "audit")?;

    // The release: its lineage drawn, a diff against 1.0.0, its stage history.
    page.click("a[data-tab=releases]")?;
    page.follow("tr[data-release='2.0.0'] a", "svg.lineage")?;
    ensure!(
        page.eval::<String>("document.querySelector('svg.lineage').dataset.nodes")? == "2",
        "the lineage graph does not draw 2.0.0 and its parent"
    );
    ensure!(page.has("svg.lineage a[aria-label='release 1.0.0']")?);
    ensure!(page.has("#diff tr.differs[data-field=parents]")?);
    ensure!(page.text("#model-card")?.contains("street-scenes"));
    // An approver moves no stage: the page offers none of the moves.
    ensure!(
        !actions(&page, "#stage-actions")?
            .iter()
            .any(|a| a.starts_with("move-")),
        "an approver is offered stage moves"
    );
    // The operator checks the move to staging (every check shown, nothing moved), then makes it.
    sign_in(&page, &operator, "operator")?;
    page.wait_for_element("[data-action=check-staging]")?;
    page.click("[data-action=check-staging]")?;
    page.wait_for_element(".transition[data-moved=false]")?;
    ensure!(page.text("#release-stage")? == "development");
    act(&page, "[data-action=move-staging]", "offline eval done")?;
    page.wait_for(
        "the release in staging",
        "document.getElementById('release-stage').innerText === 'staging' && document.querySelector('.transition[data-moved=true]')",
        T,
    )?;
    let stage: ferry_coordinator::api::StageView =
        fleet.coordinator.ctl_json(&["stage", MODEL, "2.0.0"])?;
    ensure!(stage.stage.to_string() == "staging", "{stage:?}");
    ensure!(
        page.has("#view tr[data-move=staging]")?,
        "the stage history lacks the move"
    );
    page.screenshot(&dir, "release")?;

    // The operator pins a device to 1.0.0 from its page, then unpins it.
    page.click("a[data-tab=devices]")?;
    page.follow("#devices tr[data-device] a", "#device-models")?;
    page.click("[data-action=pin]")?;
    page.eval::<bool>(
        "(() => { document.getElementById('pin-version').value = '1.0.0'; return true; })()",
    )?;
    confirm(&page, "hold while we look")?;
    page.wait_for_element("[data-pin='1.0.0'] [data-action=unpin]")?;
    page.screenshot(&dir, "device-pinned")?;
    act(&page, "[data-action=unpin]", "done looking")?;
    page.wait_for_element("[data-pin=''] [data-action=pin]")?;

    // The operator aborts one rollout and rolls another back from their pages (each a shadow
    // wave waiting for approval, started from ferryctl).
    for (id, action, phase) in [
        ("console-abort", "abort", Phase::Aborted),
        ("console-rollback", "rollback", Phase::RolledBack),
    ] {
        fleet.coordinator.ctl(&[
            "rollout",
            "create",
            MODEL,
            "2.0.0",
            "--id",
            id,
            "--waves",
            "100",
            "--shadow",
            "--approval",
            "--bake-secs",
            "1",
            "--reason",
            "to be stopped",
        ])?;
        page.show(&format!("/rollouts/{id}"), "#rollout-summary")?;
        act(
            &page,
            &format!("#rollout-actions [data-action={action}]"),
            &format!("{action} from the console"),
        )?;
        page.wait_for(
            &format!("{id} to be {phase:?}"),
            &format!(
                "document.getElementById('rollout-summary').dataset.phase === '{phase:?}' && document.getElementById('rollout-reason').innerText.includes('{action} from the console')"
            ),
            T,
        )?;
        ensure!(fleet.rollout(id)?.phase == phase);
    }

    // A viewer: the same pages, no action anywhere; a request forged with its token from the
    // page is refused by the API, as is one without a token.
    sign_in(&page, &viewer, "viewer")?;
    page.show("/rollouts/console-2", "#rollout-summary")?;
    ensure!(
        actions(&page, "#view")?.is_empty(),
        "a viewer is offered actions on a rollout"
    );
    page.show("/rollouts", "#rollout-list")?;
    ensure!(!page.has("#new-rollout")?);
    page.show(&format!("/releases/{MODEL}/2.0.0"), "svg.lineage")?;
    ensure!(
        actions(&page, "#view")?.is_empty(),
        "a viewer is offered stage moves"
    );
    page.show("/devices", "#devices tr[data-device]")?;
    let first: String =
        page.eval("document.querySelector('#devices tr[data-device]').dataset.device")?;
    page.show(&format!("/devices/{first}"), "#device-models")?;
    ensure!(
        actions(&page, "#view")?.is_empty(),
        "a viewer is offered device actions"
    );
    let forged: (u16, String) = page.eval(&format!(
        "fetch('/api/v1/rollouts/console-2/resume', {{ method: 'POST', headers: {{ Authorization: 'Bearer {viewer}', 'Content-Type': 'application/json' }}, body: '{{\"reason\":\"forged\"}}' }}).then(async r => [r.status, await r.text()])"
    ))?;
    ensure!(forged.0 == 403, "a viewer's forged resume: {forged:?}");
    let anonymous: u16 = page.eval(
        "fetch('/api/v1/rollouts/console-2/abort', { method: 'POST' }).then(r => r.status)",
    )?;
    ensure!(anonymous == 401, "a request without a token: {anonymous}");
    ensure!(fleet.rollout("console-2")?.phase == Phase::RolledBack);

    // Keyboard: on a fresh load (the tab keeps its sign-in), Tab reaches the skip link first,
    // then the console's tabs.
    page.goto("about:blank")?;
    page.goto(&format!("http://{}/#/", fleet.coordinator.http))?;
    page.wait_for_element("#devices-total")?;
    page.press("Tab")?;
    ensure!(page.eval::<String>("document.activeElement.className")? == "skip");
    page.press("Tab")?;
    ensure!(page.eval::<String>("document.activeElement.dataset.tab || ''")? == "fleet");

    // The fleet page at tablet width, and in dark mode.
    page.show("/", "#devices-total")?;
    page.emulate(800, 1024, false)?;
    ensure!(
        page.eval::<bool>("document.documentElement.scrollWidth <= window.innerWidth")?,
        "the fleet page overflows a tablet's width"
    );
    page.screenshot(&dir, "fleet-tablet")?;
    page.emulate(1366, 768, true)?;
    let background: String = page.eval("getComputedStyle(document.body).backgroundColor")?;
    ensure!(
        background == "rgb(18, 21, 28)",
        "dark mode background {background}"
    );
    page.screenshot(&dir, "fleet-dark")?;
    println!("screenshots in {}", dir.display());
    Ok(())
}
