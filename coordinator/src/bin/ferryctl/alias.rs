//! `ferryctl alias`: point aliases at versions (which moves every device following them) and
//! list where they point.

use anyhow::Result;
use clap::Subcommand;
use ferry_coordinator::api::{AliasChanged, AliasView, SetAlias};
use ferry_coordinator::outln;

use crate::client::Client;
use crate::output::{Table, ago, json, or_dash};

#[derive(Subcommand)]
pub(crate) enum AliasCommand {
    /// Point NAME@ALIAS at VERSION; devices following it update.
    Set {
        /// The model's name.
        name: String,
        /// Alias (prod, staging, …).
        alias: String,
        /// Version to point at (must be published).
        version: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
        /// Move it even though VERSION does not fit some followers' applications (their
        /// input or output schema); recorded in the audit trail.
        #[arg(long)]
        force: bool,
    },
    /// Aliases and their last change.
    List {
        /// Only this model.
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(client: &Client, command: AliasCommand) -> Result<()> {
    match command {
        AliasCommand::Set {
            name,
            alias,
            version,
            reason,
            force,
        } => {
            let changed: AliasChanged = client
                .put_json(
                    &format!("/aliases/{name}/{alias}"),
                    &SetAlias {
                        version: version.parse()?,
                        reason,
                        force,
                    },
                )
                .await?;
            outln!(
                "{name}@{alias}: {} -> {}",
                or_dash(changed.previous),
                changed.alias.version
            );
            Ok(())
        }
        AliasCommand::List {
            name,
            json: as_json,
        } => {
            let path = match &name {
                Some(n) => format!("/aliases?name={n}"),
                None => "/aliases".into(),
            };
            let aliases: Vec<AliasView> = client.get(&path).await?;
            if as_json {
                return json(&aliases);
            }
            let mut table = Table::new(&["MODEL", "ALIAS", "VERSION", "SET", "BY", "REASON"]);
            for a in aliases {
                table.row(vec![
                    a.model,
                    a.alias,
                    a.version.to_string(),
                    ago(a.set_at),
                    a.set_by,
                    or_dash(a.reason),
                ]);
            }
            if table.is_empty() {
                outln!("no aliases");
            } else {
                table.print();
            }
            Ok(())
        }
    }
}
