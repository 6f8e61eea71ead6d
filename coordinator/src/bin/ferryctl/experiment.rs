//! `ferryctl experiment`: A/B experiments — a challenger against the release an alias points
//! at, on a share of a cohort for a set time (or sample) — their readout, and the decision
//! (promote, reject, extend) recorded with who and why.

use anyhow::Result;
use clap::Subcommand;
use ferry_coordinator::api::{CreateExperiment, DecideExperiment, ExperimentView};
use ferry_coordinator::outln;
use ferry_coordinator::store::experiments::Verdict;

use crate::client::Client;
use crate::output::{Table, json, or_dash, timestamp};

#[derive(Subcommand)]
pub(crate) enum ExperimentCommand {
    /// Serve CHALLENGER of NAME to a share of the cohort, the rest staying on what the alias
    /// points at, for --duration-secs (or until --min-samples requests per arm).
    Create {
        /// Model.
        name: String,
        /// The release to try.
        challenger: String,
        /// How long it runs before it may be decided, in seconds.
        #[arg(long)]
        duration_secs: u64,
        /// The challenger's share of the cohort, in percent.
        #[arg(long, default_value_t = 50.0)]
        percent: f64,
        /// Requests each arm needs to be ready before the time is up (0: time only).
        #[arg(long, default_value_t = 0)]
        min_samples: u64,
        /// Cohort selector over device labels.
        #[arg(long, default_value = "")]
        cohort: String,
        /// The alias whose release is the champion.
        #[arg(long, default_value = "prod")]
        alias: String,
        /// Experiment name [default: NAME-CHALLENGER-experiment].
        #[arg(long)]
        id: Option<String>,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
        /// Start it even though the challenger does not fit some of the cohort's
        /// applications (recorded in the audit trail).
        #[arg(long)]
        force: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Experiments and where each stands.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One experiment: its arms and the readout, metric by metric.
    Status {
        /// The experiment.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Promote the challenger (through the production stage's gates when configured), reject
    /// it (its devices return to the champion), or extend the experiment.
    Decide {
        /// The experiment.
        id: String,
        /// promote, reject or extend.
        verdict: VerdictArg,
        /// Why (required; recorded with the decision).
        #[arg(long)]
        reason: String,
        /// With extend: seconds more.
        #[arg(long)]
        extend_secs: Option<u64>,
        /// Promote before the time is up or the sample reached.
        #[arg(long)]
        early: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A verdict on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum VerdictArg {
    Promote,
    Reject,
    Extend,
}

impl From<VerdictArg> for Verdict {
    fn from(v: VerdictArg) -> Self {
        match v {
            VerdictArg::Promote => Verdict::Promote,
            VerdictArg::Reject => Verdict::Reject,
            VerdictArg::Extend => Verdict::Extend,
        }
    }
}

pub(crate) async fn run(client: &Client, command: ExperimentCommand) -> Result<()> {
    match command {
        ExperimentCommand::Create {
            name,
            challenger,
            duration_secs,
            percent,
            min_samples,
            cohort,
            alias,
            id,
            reason,
            force,
            json: as_json,
        } => {
            let request = CreateExperiment {
                id,
                model: name,
                challenger: challenger.parse()?,
                alias: Some(alias),
                cohort,
                percent: Some(percent),
                duration_secs,
                min_samples,
                reason,
                force,
            };
            let view: ExperimentView = client.post_for("/experiments", &request).await?;
            if as_json {
                return json(&view);
            }
            outln!(
                "experiment {}: {} {} against {} on {:.1} % of the cohort until {}",
                view.id,
                view.model,
                view.challenger.version,
                view.champion.version,
                view.percent,
                timestamp(view.ends_at)
            );
            Ok(())
        }
        ExperimentCommand::List { json: as_json } => {
            let views: Vec<ExperimentView> = client.get("/experiments").await?;
            if as_json {
                return json(&views);
            }
            let mut table = Table::new(&[
                "ID",
                "MODEL",
                "CHAMPION",
                "CHALLENGER",
                "SHARE",
                "PHASE",
                "ENDS",
            ]);
            for v in views {
                table.row(vec![
                    v.id,
                    v.model,
                    v.champion.version.to_string(),
                    v.challenger.version.to_string(),
                    format!("{:.1} %", v.percent),
                    format!("{:?}", v.phase).to_lowercase(),
                    timestamp(v.ends_at),
                ]);
            }
            if table.is_empty() {
                outln!("no experiments");
            } else {
                table.print();
            }
            Ok(())
        }
        ExperimentCommand::Status { id, json: as_json } => {
            let view: ExperimentView = client
                .get(&format!("/experiments/{}", crate::client::escape(&id)))
                .await?;
            if as_json {
                return json(&view);
            }
            print(&view);
            Ok(())
        }
        ExperimentCommand::Decide {
            id,
            verdict,
            reason,
            extend_secs,
            early,
            json: as_json,
        } => {
            let request = DecideExperiment {
                verdict: verdict.into(),
                reason,
                extend_secs,
                early,
            };
            let view: ExperimentView = client
                .post_for(
                    &format!("/experiments/{}/decide", crate::client::escape(&id)),
                    &request,
                )
                .await?;
            if as_json {
                return json(&view);
            }
            outln!(
                "experiment {}: {:?} — {}",
                view.id,
                verdict,
                or_dash(view.outcome.clone())
            );
            Ok(())
        }
    }
}

/// An experiment's arms and readout.
fn print(v: &ExperimentView) {
    outln!(
        "experiment {} on {} ({} cohort \"{}\"): {:?}, split {:?}",
        v.id,
        v.model,
        v.alias,
        v.cohort,
        v.phase,
        v.rollout_phase
    );
    outln!(
        "  champion   {}: {} devices, {} requests",
        v.champion.version,
        v.champion.devices,
        v.champion.requests
    );
    outln!(
        "  challenger {}: {} devices, {} requests ({:.1} % of the cohort)",
        v.challenger.version,
        v.challenger.devices,
        v.challenger.requests,
        v.percent
    );
    outln!(
        "  may be decided at {}{}",
        timestamp(v.ends_at),
        if v.min_samples > 0 {
            format!(" or at {} requests per arm", v.min_samples)
        } else {
            String::new()
        }
    );
    let number = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.4}"));
    let mut table = Table::new(&[
        "METRIC",
        "CHAMPION",
        "CHALLENGER",
        "DIFFERENCE",
        "95 % INTERVAL",
        "",
    ]);
    for r in &v.readout {
        table.row(vec![
            r.metric.clone(),
            number(r.champion),
            number(r.challenger),
            number(r.difference),
            r.interval
                .map_or("-".to_owned(), |(lo, hi)| format!("[{lo:.4}, {hi:.4}]")),
            if r.significant {
                "significant".into()
            } else {
                String::new()
            },
        ]);
    }
    table.print();
    for d in &v.decisions {
        outln!(
            "  decided {} by {} at {}: {}",
            d.verdict,
            d.by,
            timestamp(d.at),
            d.reason
        );
    }
}
