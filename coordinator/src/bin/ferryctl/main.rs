//! `ferryctl`: the admin CLI of a Ferry coordinator.
//!
//! One module per command group; each parses its arguments (clap), calls the admin API through
//! [`client`], and prints a table or, with `--json`, the API's own JSON.

mod alias;
mod audit;
mod bundle;
mod client;
mod devices;
mod exit;
mod experiment;
mod fleet;
mod fragmentation;
mod gc;
mod import;
mod keys;
mod lineage;
mod meta;
mod output;
mod progress;
mod publish;
mod releases;
mod resign;
mod rollout;
mod root;
mod stage;
mod tokens;
mod upload;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Admin CLI for a Ferry coordinator: publish signed releases, move aliases and stages, run
/// rollouts, watch the fleet, read the audit trail.
#[derive(Parser)]
#[command(version, after_help = exit::TABLE)]
struct Cli {
    #[command(flatten)]
    connection: client::ConnectionArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publisher signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Sign and upload a release.
    Publish(publish::PublishArgs),
    /// Publish models registered elsewhere (MLflow).
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Published releases.
    #[command(subcommand)]
    Releases(releases::ReleasesCommand),
    /// A release's lifecycle stage: show it, check or make a move.
    Stage(stage::StageArgs),
    /// Approve a release's promotion to production.
    Approve(stage::ApproveArgs),
    /// A release's ancestry and inputs (parents, datasets, code commits).
    Lineage(lineage::LineageArgs),
    /// What an input reaches: releases derived from it and the devices running them.
    #[command(subcommand)]
    Impact(lineage::ImpactCommand),
    /// Two releases of a model side by side (metadata, metrics, schemas).
    Diff(lineage::DiffArgs),
    /// A release's model card (Markdown).
    Card(lineage::CardArgs),
    /// Aliases (prod, staging, latest, …).
    #[command(subcommand)]
    Alias(alias::AliasCommand),
    /// Enrolled devices.
    #[command(subcommand)]
    Devices(devices::DevicesCommand),
    /// The fleet at a glance.
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// Staged rollouts with health gates.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// A/B experiments: a challenger against the champion on a share of a cohort.
    #[command(subcommand)]
    Experiment(experiment::ExperimentCommand),
    /// Offline bundles: a release in one file for devices no coordinator reaches.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Retention and garbage collection: what would be freed, or (--apply) freeing it.
    Gc(gc::GcArgs),
    /// The audit trail; --verify walks its hash chain.
    Audit(audit::AuditArgs),
    /// API tokens with roles (admin only).
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferryctl: error: {e:#}");
            exit::code_of(&e)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            // Key generation and the root ceremony are local and need no coordinator.
            Command::Keys(keys::KeysCommand::Generate(args)) => keys::generate(&args),
            Command::Keys(keys::KeysCommand::Root(command)) if command.is_offline() => {
                root::run(command)
            }
            command => {
                let client = client::Client::connect(&cli.connection)?;
                match command {
                    Command::Keys(cmd) => keys::run(&client, cmd).await,
                    Command::Publish(args) => publish::run(&client, &args).await,
                    Command::Import(cmd) => import::run(&client, cmd).await,
                    Command::Releases(cmd) => releases::run(&client, cmd).await,
                    Command::Alias(cmd) => alias::run(&client, cmd).await,
                    Command::Stage(args) => stage::run(&client, &args).await,
                    Command::Lineage(args) => lineage::lineage(&client, &args).await,
                    Command::Impact(cmd) => lineage::impact(&client, cmd).await,
                    Command::Diff(args) => lineage::diff(&client, &args).await,
                    Command::Card(args) => lineage::card(&client, &args).await,
                    Command::Approve(args) => stage::approve(&client, &args).await,
                    Command::Devices(cmd) => devices::run(&client, cmd).await,
                    Command::Fleet(cmd) => fleet::run(&client, cmd).await,
                    Command::Tokens(cmd) => tokens::run(&client, cmd).await,
                    Command::Audit(args) => audit::run(&client, &args).await,
                    Command::Gc(args) => gc::run(&client, &args).await,
                    Command::Bundle(cmd) => bundle::run(&client, cmd).await,
                    Command::Rollout(cmd) => rollout::run(&client, cmd).await,
                    Command::Experiment(cmd) => experiment::run(&client, cmd).await,
                }
            }
        }
    })
}
