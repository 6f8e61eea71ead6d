//! `ferryctl rollout`: staged rollouts (create from flags or a plan file, status with
//! `--watch`, and the operator actions pause, resume, approve, abort, rollback).

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use ferry_coordinator::api::{
    CreateRollout, RolloutAction, RolloutCheck, RolloutDevicePage, RolloutView, Standing, WaveSpec,
};
use ferry_coordinator::{out, outln};
use ferry_shared::rollout::Verdict;

use crate::client::Client;
use crate::exit::{CheckFailed, Usage};
use crate::output::{Table, ago, json, or_dash};

#[derive(Subcommand)]
pub(crate) enum RolloutCommand {
    /// Start rolling VERSION of NAME out in waves (or everything from `--plan FILE`).
    Create {
        /// Model (omit with --plan).
        name: Option<String>,
        /// Version (omit with --plan).
        version: Option<String>,
        /// A JSON plan file (the body of POST /api/v1/rollouts).
        #[arg(long, conflicts_with_all = ["name", "version"])]
        plan: Option<std::path::PathBuf>,
        /// Rollout name (default NAME-VERSION).
        #[arg(long)]
        id: Option<String>,
        /// Cohort selector, e.g. "accelerator=gpu, region in (eu, us)".
        #[arg(long, default_value = "")]
        cohort: String,
        /// Cumulative wave shares in percent.
        #[arg(long, value_delimiter = ',', default_values_t = [5.0, 25.0, 50.0, 100.0])]
        waves: Vec<f64>,
        /// Minimum bake time of each wave, in seconds.
        #[arg(long, default_value_t = 3600)]
        bake_secs: u64,
        /// Waves after the first wait for `rollout approve`.
        #[arg(long)]
        approval: bool,
        /// Put a shadow wave over the first wave's devices in front: they stage VERSION
        /// beside what they run and report its shadow metrics before any serves it.
        #[arg(long)]
        shadow: bool,
        /// The alias moved when the rollout completes.
        #[arg(long, default_value = "prod")]
        alias: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
        /// Start it even though VERSION does not fit some of the cohort's applications
        /// (their input or output schema); recorded in the audit trail.
        #[arg(long)]
        force: bool,
        /// Seconds offline after which a device is left out of its wave [default: 1800]
        #[arg(long)]
        unreachable_after: Option<u64>,
        /// Largest share of the devices in force, in percent, a wave may leave out (pinned
        /// by a hand rollback, or unreachable) and still advance [default: 20]
        #[arg(long)]
        max_left_out: Option<f64>,
        /// At most this many devices download VERSION at once; the rest of the waves in
        /// force wait their turn [default: no limit]
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max_downloading: Option<u32>,
        /// Devices switch as soon as they have the release, their update windows and their
        /// applications' locks notwithstanding (recorded in the audit trail with the rest).
        #[arg(long)]
        now: bool,
        /// Start nothing: list how many devices each wave would reach and those that could
        /// not take VERSION (schema, hardware, disk by their last reported free space).
        /// Exits 9 when there are any.
        #[arg(long)]
        check: bool,
        /// With --check: print JSON.
        #[arg(long, requires = "check")]
        json: bool,
    },
    /// Rollouts, or one in detail (`--watch` redraws it until it ends).
    Status {
        /// Rollout name.
        id: Option<String>,
        /// Redraw every two seconds.
        #[arg(long)]
        watch: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A rollout's devices that stand one way (the counts `status` shows, listed), a page
    /// at a time in id order.
    Devices {
        /// Rollout name.
        id: String,
        /// cohort, targeted, on_target, shadowing, install_failed, health_failed,
        /// holding_up or left_out.
        #[arg(long, default_value = "cohort", value_parser = |s: &str| s.parse::<Standing>())]
        standing: Standing,
        /// Devices after this id (the `next` a page printed).
        #[arg(long)]
        after: Option<String>,
        /// At most this many devices (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop advancing (gates still roll back).
    Pause(ActionArgs),
    /// Advance again.
    Resume(ActionArgs),
    /// Let the waiting wave start.
    Approve(ActionArgs),
    /// Stop where it is; devices keep what they run.
    Abort(ActionArgs),
    /// Return every device to the version it ran before.
    Rollback(ActionArgs),
}

#[derive(clap::Args)]
pub(crate) struct ActionArgs {
    /// Rollout name.
    id: String,
    /// Why, for the audit trail.
    #[arg(long)]
    reason: Option<String>,
}

pub(crate) async fn run(client: &Client, command: RolloutCommand) -> Result<()> {
    let act = |name: &'static str, args: ActionArgs| async move {
        let view: RolloutView = client
            .post_for(
                &format!("/rollouts/{}/{name}", args.id),
                &RolloutAction {
                    reason: args.reason,
                },
            )
            .await?;
        print_one(&view);
        Ok(())
    };
    match command {
        RolloutCommand::Create {
            name,
            version,
            plan,
            id,
            cohort,
            waves,
            bake_secs,
            approval,
            shadow,
            alias,
            reason,
            force,
            unreachable_after,
            max_left_out,
            check,
            json: as_json,
            max_downloading,
            now,
        } => {
            let mut request: CreateRollout = match plan {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a rollout plan", path.display()))?
                }
                None => {
                    let (Some(name), Some(version)) = (name, version) else {
                        return Err(Usage("give NAME and VERSION, or --plan FILE".into()).into());
                    };
                    let shadow_wave = waves.first().filter(|_| shadow).map(|first| WaveSpec {
                        percent: *first,
                        bake_secs,
                        approval: false,
                        shadow: true,
                        gates: None,
                    });
                    let serving = waves.iter().enumerate().map(|(i, percent)| WaveSpec {
                        percent: *percent,
                        bake_secs,
                        approval: approval && (i > 0 || shadow),
                        shadow: false,
                        gates: None,
                    });
                    CreateRollout {
                        id,
                        model: name,
                        version: version.parse()?,
                        alias: Some(alias),
                        cohort,
                        waves: Some(shadow_wave.into_iter().chain(serving).collect()),
                        reason,
                        force: false,
                        unreachable_after_secs: None,
                        max_left_out_percent: None,
                        max_downloading: None,
                        now: false,
                    }
                }
            };
            request.force |= force;
            request.unreachable_after_secs = unreachable_after.or(request.unreachable_after_secs);
            request.max_left_out_percent = max_left_out.or(request.max_left_out_percent);
            request.max_downloading = max_downloading.or(request.max_downloading);
            request.now |= now;
            if check {
                let checked: RolloutCheck = client.post_for("/rollouts/check", &request).await?;
                if as_json {
                    json(&checked)?;
                } else {
                    print_check(&checked);
                }
                let misfits: usize = checked.misfit_counts.values().sum();
                if misfits > 0 {
                    return Err(CheckFailed(format!(
                        "{misfits} device(s) could not take {} {}",
                        checked.model, checked.version
                    ))
                    .into());
                }
                return Ok(());
            }
            let view: RolloutView = client.post_for("/rollouts", &request).await?;
            print_one(&view);
            Ok(())
        }
        RolloutCommand::Status {
            id: Some(id),
            watch,
            json: as_json,
        } => loop {
            let view: RolloutView = client.get(&format!("/rollouts/{id}")).await?;
            if as_json {
                return json(&view);
            }
            let redraw = watch && std::io::IsTerminal::is_terminal(&std::io::stdout());
            if redraw {
                // Home the cursor and clear below it: the view is redrawn in place.
                out!("\x1b[H\x1b[J");
            } else if watch {
                outln!("--- {}", crate::output::timestamp(crate::output::now()));
            }
            print_one(&view);
            if !watch || view.phase.is_terminal() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        },
        RolloutCommand::Status {
            id: None,
            json: as_json,
            ..
        } => {
            let views: Vec<RolloutView> = client.get("/rollouts").await?;
            if as_json {
                return json(&views);
            }
            let mut table = Table::new(&[
                "ROLLOUT",
                "MODEL",
                "VERSION",
                "PHASE",
                "WAVE",
                "ON TARGET",
                "UPDATED",
            ]);
            for v in &views {
                table.row(vec![
                    v.id.clone(),
                    v.model.clone(),
                    v.version.to_string(),
                    phase(v),
                    wave(v),
                    format!("{}/{}", v.devices.on_target, v.devices.cohort),
                    ago(v.updated_at),
                ]);
            }
            if table.is_empty() {
                outln!("no rollouts");
            } else {
                table.print();
            }
            Ok(())
        }
        RolloutCommand::Devices {
            id,
            standing,
            after,
            limit,
            json: as_json,
        } => {
            // Device ids are hex: nothing in the query needs escaping.
            let mut path = format!(
                "/rollouts/{id}/devices?standing={}&limit={limit}",
                standing.as_str()
            );
            if let Some(after) = after {
                if !after.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(Usage(format!("--after takes a device id (got {after:?})")).into());
                }
                path.push_str(&format!("&after={after}"));
            }
            let page: RolloutDevicePage = client.get(&path).await?;
            if as_json {
                return json(&page);
            }
            print_devices(&page);
            Ok(())
        }
        RolloutCommand::Pause(args) => act("pause", args).await,
        RolloutCommand::Resume(args) => act("resume", args).await,
        RolloutCommand::Approve(args) => act("approve", args).await,
        RolloutCommand::Abort(args) => act("abort", args).await,
        RolloutCommand::Rollback(args) => act("rollback", args).await,
    }
}

fn print_devices(page: &RolloutDevicePage) {
    let mut table = Table::new(&["DEVICE", "NAME", "WAVE", "RUNS", "STAGED", "HOLDUP"]);
    for d in &page.devices {
        table.row(vec![
            d.id.clone(),
            or_dash(d.name.as_deref()),
            d.wave.to_string(),
            or_dash(d.current.as_ref()),
            or_dash(d.candidate.as_ref()),
            or_dash(d.holdup.as_deref()),
        ]);
    }
    if table.is_empty() {
        outln!("no device stands {}", page.standing.as_str());
    } else {
        table.print();
    }
    outln!(
        "{} of {} device(s) {}",
        page.devices.len(),
        page.total,
        page.standing.as_str()
    );
    if let Some(next) = &page.next {
        outln!("more: --after {next}");
    }
}

fn phase(v: &RolloutView) -> String {
    format!("{:?}{}", v.phase, if v.paused { " (paused)" } else { "" })
}

fn wave(v: &RolloutView) -> String {
    let current = v.waves_in_force.checked_sub(1);
    match current.and_then(|i| v.waves.get(i)) {
        Some(p) => format!(
            "{}/{} ({p} %{})",
            v.waves_in_force,
            v.waves.len(),
            if current.is_some_and(|i| v.shadow_waves.contains(&i)) {
                " shadow"
            } else {
                ""
            }
        ),
        None => format!("0/{}", v.waves.len()),
    }
}

fn print_one(v: &RolloutView) {
    outln!("rollout {}: {} {} → @{}", v.id, v.model, v.version, v.alias);
    outln!(
        "  cohort   {}",
        if v.cohort.is_empty() {
            "(every device)"
        } else {
            &v.cohort
        }
    );
    outln!("  phase    {}", phase(v));
    outln!("  wave     {}", wave(v));
    if let Some(reason) = &v.reason {
        outln!("  reason   {reason}");
    }
    let d = &v.devices;
    outln!(
        "  devices  {} in cohort, {} targeted, {} on target",
        d.cohort,
        d.targeted,
        d.on_target
    );
    outln!(
        "           {} install failed, {} health failed",
        d.install_failed,
        d.health_failed
    );
    if d.shadowing > 0 {
        outln!(
            "           {} with the target staged as shadow candidate",
            d.shadowing
        );
    }
    if let Some(limit) = v.max_downloading {
        outln!(
            "           {} downloading now (at most {limit} at once)",
            v.downloading
        );
    }
    let mut table = Table::new(&["GATE", "VALUE", "THRESHOLD", "SAMPLES", "VERDICT"]);
    for g in &v.gates {
        table.row(vec![
            format!("{:?}", g.gate.kind),
            or_dash(g.value.map(|x| format!("{x:.4}"))),
            format!("{}", g.gate.threshold),
            format!("{}/{}", g.samples, g.gate.min_samples),
            match g.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
                Verdict::Waiting => "waiting",
            }
            .into(),
        ]);
    }
    if !table.is_empty() {
        table.print();
    }
    for note in &v.notes {
        crate::output::wrapped("  note: ", note);
    }
    if !v.stragglers.is_empty() {
        crate::output::wrapped(
            "  ",
            &format!(
                "holding it: {} device(s); left out: {} of {} allowed (offline after {} s)",
                v.stragglers_total, v.left_out, v.may_leave_out, v.unreachable_after_secs
            ),
        );
        let mut table = Table::new(&["DEVICE", "WAVE", "LEFT OUT", "WHY"]);
        for s in &v.stragglers {
            table.row(vec![
                s.device.clone(),
                s.wave.to_string(),
                if s.left_out { "yes" } else { "no" }.into(),
                s.reason.clone(),
            ]);
        }
        table.print();
        let unlisted = v.stragglers_total.saturating_sub(v.stragglers.len() as u64);
        if unlisted > 0 {
            outln!("  … and {unlisted} more");
        }
    }
}

/// Prints whom a checked rollout would reach and who could not take its release.
fn print_check(c: &RolloutCheck) {
    outln!(
        "{} {} to {} device(s) following {}@{}{}",
        c.model,
        c.version,
        c.devices,
        c.model,
        c.alias,
        if c.cohort.is_empty() {
            String::new()
        } else {
            format!(" in cohort {}", c.cohort)
        }
    );
    let mut waves = Table::new(&["WAVE", "SHARE", "DEVICES"]);
    for (i, w) in c.waves.iter().enumerate() {
        waves.row(vec![
            format!("{}{}", i + 1, if w.shadow { " (shadow)" } else { "" }),
            format!("{} %", w.percent),
            w.devices.to_string(),
        ]);
    }
    waves.print();
    let misfits: usize = c.misfit_counts.values().sum();
    if misfits == 0 {
        outln!("every device it reaches can take {}", c.version);
    } else {
        let kinds: Vec<String> = c
            .misfit_counts
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        outln!(
            "{misfits} device(s) could not take {}: {}",
            c.version,
            kinds.join(", ")
        );
        let mut table = Table::new(&["DEVICE", "NAME", "WAVE", "WHY"]);
        for m in &c.misfits {
            table.row(vec![
                m.device.clone(),
                or_dash(m.name.as_deref()),
                (m.wave + 1).to_string(),
                m.detail.clone(),
            ]);
        }
        table.print();
        if c.misfits.len() < misfits {
            outln!("(the first {} shown)", c.misfits.len());
        }
    }
    if c.disk_unknown > 0 {
        outln!(
            "{} device(s) have not told their disk space (agents before protocol 7): not judged on it",
            c.disk_unknown
        );
    }
}
