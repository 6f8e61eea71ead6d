//! `ferry-agent`: the daemon (`run`, the default) and the local commands `status`,
//! `rollback` and `install-bundle`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ferry_agent::config::Config;
use ferry_agent::daemon::Outcome;
use ferry_agent::handover::{self, Next};
use ferry_agent::{daemon, rollback, status};

/// Ferry device agent.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, default_value = "/etc/ferry/agent.toml", global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (default).
    Run,
    /// Show versions, links, last update and last error.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Switch back to the previous version now, without the coordinator.
    Rollback {
        /// The model to roll back [default: the first configured].
        #[arg(long)]
        model: Option<ferry_shared::ModelName>,
    },
    /// Install an offline bundle (`ferryctl bundle create`) without a coordinator: the
    /// running agent checks and installs it as any update, and reports it on next contact.
    InstallBundle {
        /// The bundle file.
        file: PathBuf,
        /// Seconds to wait for the install, its health check and its confirmation (0: do not
        /// wait).
        #[arg(long, default_value_t = 900)]
        wait: u64,
    },
    /// Check the configuration (and the files it names) and exit: 0 when the agent can start
    /// with it. The unit runs it first (ExecCondition), so an unconfigured agent stays down
    /// quietly instead of failing every few seconds.
    Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (journald under systemd), filtered by `FERRY_LOG` (`info,quinn=warn` style).
fn init_logging() -> Result<()> {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let spec = std::env::var("FERRY_LOG").unwrap_or_else(|_| "info,quinn=warn,rustls=warn".into());
    let filter: Targets = spec
        .parse()
        .with_context(|| format!("FERRY_LOG=`{spec}` is not a log filter"))?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false),
        )
        .with(filter)
        .init();
    Ok(())
}

/// Runs the daemon, and the agent's own updates around it (see `handover`): what starts may
/// be another installed agent binary, a new one on trial, or this one after healing a trial
/// that failed; a daemon that hands over to a new binary execs it.
fn run_daemon(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    // Before the hand-over looks at the state directory: it may heal or launch a trial there.
    let running = daemon::hold_state_dir(&config)?;
    let mut exec_failed = false;
    loop {
        let next = match handover::at_start(&config)? {
            Next::Exec { trial: false, .. } if exec_failed => Next::Run(None),
            next => next,
        };
        match next {
            Next::Run(trial) => {
                match runtime.block_on(daemon::run(config.clone(), trial, &running))? {
                    Outcome::Stopped => return Ok(()),
                    Outcome::HandOver => continue,
                }
            }
            Next::Exec { binary, trial } => {
                let e = handover::exec(&binary);
                // Only reached when the exec failed. A trial's binary that cannot even start
                // fails its trial: the next round heals it. Another installed agent that
                // cannot start leaves this one to run.
                tracing::error!(binary = %binary.display(), "cannot start the agent binary: {e}");
                exec_failed = !trial;
            }
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = Config::load(&cli.config)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            ferry_agent::footprint::configure_allocator();
            init_logging()?;
            run_daemon(config)
        }
        Command::Status { json } => {
            let status = status::gather(&config)?;
            if json {
                ferry_agent::outln!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                status::print(&status);
            }
            Ok(())
        }
        Command::Check => {
            ferry_agent::outln!(
                "{}: the agent can start with it (models {}, coordinator {})",
                cli.config.display(),
                config
                    .models
                    .iter()
                    .map(|m| format!("{}@{}", m.model, m.alias))
                    .collect::<Vec<_>>()
                    .join(", "),
                config
                    .coordinators
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Command::InstallBundle { file, wait } => {
            use ferry_agent::bundle::command::{Outcome, run};
            match run(&config, &file, std::time::Duration::from_secs(wait))? {
                Outcome::AlreadyRunning(m, v) => ferry_agent::outln!("{m} {v} already runs here"),
                Outcome::Queued(m, v) => ferry_agent::outln!(
                    "the agent is not running: {m} {v} is installed from the bundle when it starts"
                ),
                Outcome::HandedOver(m, v) => ferry_agent::outln!(
                    "handed {m} {v} to the agent; `ferry-agent status` shows how it goes"
                ),
                Outcome::Installed(m, v, how) => ferry_agent::outln!("{m} {v}: {how}"),
            }
            Ok(())
        }
        Command::Rollback { model } => {
            let done = rollback::run(&config, model.as_ref())?;
            ferry_agent::outln!(
                "rolled back {}: {} -> {} in {:.1} ms; {} stays on disk as previous and is held \
                 until the coordinator asks for another version",
                done.model,
                done.from,
                done.to,
                done.elapsed.as_secs_f64() * 1000.0,
                done.from
            );
            match rollback::reload(&config, &done) {
                Ok(true) => {
                    ferry_agent::outln!("the model server loaded {}", done.to);
                    Ok(())
                }
                Ok(false) => Ok(()),
                // The rollback stands; the operator learns the server did not follow.
                Err(e) => anyhow::bail!("rolled back, but {e}"),
            }
        }
    }
}
