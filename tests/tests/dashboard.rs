//! The console's fleet page in a real browser: a coordinator with three agents and a rollout
//! waiting for approval, the page opened in headless Chromium (Debian's, installed by
//! `scripts/install-chromium.sh`) with the read-only viewer token handed over in the address,
//! the numbers it shows checked against the API, the device search, and screenshots saved to
//! `target/dashboard.png` and (a phone's width) `target/dashboard-420.png`.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use ferry_coordinator::api::{DeviceView, FleetStatus, FragmentationReport};
use ferry_tests::browser::{Browser, Page};
use ferry_tests::scenarios::{fragmented_fleet, rollout_awaiting_approval};

/// The value of `attr` on the first element matching `selector`.
fn attr(page: &Page, selector: &str, attr: &str) -> Result<Option<String>> {
    page.eval(&format!(
        "(() => {{ const e = document.querySelector({}); return e ? e.getAttribute({}) : null; }})()",
        serde_json::to_string(selector)?,
        serde_json::to_string(attr)?
    ))
}

#[test]
fn the_dashboard_shows_what_the_api_says_in_a_real_browser() -> Result<()> {
    ferry_tests::browser::chromium()?;
    let fleet = fragmented_fleet()?;
    let c = &fleet.coordinator;
    rollout_awaiting_approval(&fleet)?;

    let status: FleetStatus = c.ctl_json(&["fleet", "status"])?;
    let frag: FragmentationReport = c.ctl_json(&["fleet", "fragmentation"])?;
    let devices: Vec<DeviceView> = c.ctl_json(&["devices", "list"])?;
    let gpu = devices
        .iter()
        .find(|d| d.labels.get("accelerator").map(String::as_str) == Some("gpu"))
        .context("no gpu device")?;

    let browser = Browser::launch(&fleet.dir, 1280, 900)?;
    let base = format!("http://{}/", c.http);
    let page = browser.open(&format!("{base}#token={}", c.token("viewer")?))?;
    page.wait_for(
        "the fleet page",
        "document.body.dataset.loaded === 'true' && document.getElementById('devices-total')",
        ferry_tests::browser::STEP,
    )?;
    ensure!(
        !page.eval::<String>("location.href")?.contains("token"),
        "the token stays in the address"
    );
    ensure!(page.text("#devices-total")? == status.devices_total.to_string());
    ensure!(page.text("#devices-connected")? == status.devices_connected.to_string());
    let model = &frag.models[0];
    let marker = format!("[data-model=\"{}\"]", model.model);
    ensure!(attr(&page, &marker, "data-devices")? == Some(model.overall.devices.to_string()));
    ensure!(
        attr(&page, &marker, "data-index")? == Some(format!("{:.4}", model.overall.index)),
        "index shown: {:?}, API: {}",
        attr(&page, &marker, "data-index")?,
        model.overall.index
    );
    for v in &model.overall.versions {
        let version = v
            .version
            .as_ref()
            .map_or("none".into(), ToString::to_string);
        let shown = attr(
            &page,
            &format!("[data-version=\"{version}\"]"),
            "data-count",
        )?;
        ensure!(
            shown == Some(v.devices.to_string()),
            "{version}: {shown:?} vs {}",
            v.devices
        );
    }
    let behind = &model.overall.behind[0];
    ensure!(
        attr(
            &page,
            &format!("[data-behind=\"{}\"]", behind.id),
            "data-reason"
        )?
        .as_deref()
            == Some("pinned")
    );
    ensure!(
        attr(&page, "[data-rollout=\"canary-3\"]", "data-phase")?.as_deref()
            == Some("AwaitingApproval")
    );
    // The wave's bar shows adoption (on target of those reached), not the wave's share.
    let canary = fleet.rollout("canary-3")?;
    let adoption = if canary.devices.targeted == 0 {
        0
    } else {
        (canary.devices.on_target as f64 / canary.devices.targeted as f64 * 100.0).round() as u64
    };
    ensure!(
        attr(&page, "[data-rollout=\"canary-3\"]", "data-adoption")? == Some(adoption.to_string()),
        "adoption shown: {:?}, API: {adoption}",
        attr(&page, "[data-rollout=\"canary-3\"]", "data-adoption")?
    );
    // The fragmentation chart places its samples on a 7-day time axis.
    ensure!(
        attr(&page, &marker, "data-samples")?.is_some_and(|n| n.parse::<u64>().is_ok()),
        "no history chart"
    );
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("..");
    println!(
        "screenshot: {}",
        page.screenshot(&shot, "dashboard")?.display()
    );
    // As a phone or a narrow window shows it: nothing wider than the screen.
    page.emulate(420, 900, false)?;
    ensure!(
        page.eval::<bool>("document.documentElement.scrollWidth <= window.innerWidth")?,
        "the fleet page overflows 420 px"
    );
    println!(
        "screenshot: {}",
        page.screenshot(&shot, "dashboard-420")?.display()
    );
    page.emulate(1280, 900, false)?;

    // The device search, done by the coordinator: the GPU device and only it.
    page.show("/devices?q=accelerator%3Dgpu", "#devices")?;
    let shown: Vec<String> = page.eval(
        "[...document.querySelectorAll('#devices tr[data-device]')].map(r => r.dataset.device)",
    )?;
    ensure!(shown == [gpu.id.clone()], "search shows {shown:?}");

    // A page without a token (another browser, nothing kept) asks for one and shows no data.
    let other = Browser::launch(&fleet.dir, 1280, 900)?;
    let login = other.open(&base)?;
    login.wait_for_element("#login:not([hidden])")?;
    ensure!(!login.eval::<bool>("document.body.dataset.loaded === 'true'")?);
    ensure!(
        login.text("#updated")?.is_empty(),
        "the sign-in screen says {:?}",
        login.text("#updated")?
    );
    Ok(())
}

/// A live page swapped in its refresh between a button's press and its release, so the two
/// landed on different elements and the click was lost (a slow hand on a rollout's Approve
/// opened nothing one time in a few).
#[test]
fn a_click_held_across_a_live_refresh_is_not_lost() -> Result<()> {
    ferry_tests::browser::chromium()?;
    let fleet = ferry_tests::Fleet::start(1, None)?;
    let c = &fleet.coordinator;
    ferry_tests::wait_until("the device enrolled", ferry_tests::browser::STEP, || {
        Ok(!c.devices()?.is_empty())
    })?;
    let id = c.devices()?[0].id.clone();
    let browser = Browser::launch(&fleet.dir, 1280, 900)?;
    let page = browser.open(&format!("http://{}/#token={}", c.http, c.token("admin")?))?;
    page.show(&format!("/devices/{id}"), "[data-action=revoke]")?;
    let updated = page.text("#updated")?;
    // Held longer than the five seconds between refreshes of a live page.
    page.slow_click(
        "[data-action=revoke]",
        std::time::Duration::from_millis(6500),
    )?;
    page.wait_for(
        "the click to open the dialog",
        "document.querySelector('dialog[open]')",
        std::time::Duration::from_secs(3),
    )?;
    // The refresh was not dropped: it waited for the release, and a dialog holds it now.
    page.click("#dialog-cancel")?;
    let refreshed = format!(
        "document.getElementById('updated').innerText !== {}",
        serde_json::to_string(&updated)?
    );
    page.wait_for("a refresh", &refreshed, ferry_tests::browser::STEP)?;
    Ok(())
}
