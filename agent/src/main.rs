//! `ferry-agent`: the daemon (`run`, the default) and the local commands `status` and
//! `rollback`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ferry_agent::config::Config;
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
    Rollback,
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

fn run(cli: Cli) -> Result<()> {
    let config = Config::load(&cli.config)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                        .unwrap_or_else(|_| "info,quinn=warn,rustls=warn".into()),
                )
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?
                .block_on(daemon::run(config))
        }
        Command::Status { json } => {
            let status = status::gather(&config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                status::print(&status);
            }
            Ok(())
        }
        Command::Rollback => {
            let done = rollback::run(&config)?;
            println!(
                "rolled back {}: {} -> {} in {:.1} ms; {} stays on disk as previous and is held \
                 until the coordinator asks for another version",
                config.model,
                done.from,
                done.to,
                done.elapsed.as_secs_f64() * 1000.0,
                done.from
            );
            Ok(())
        }
    }
}
