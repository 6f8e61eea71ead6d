//! `ferryctl devices`: enrolled devices, what they run and their last error.

use anyhow::Result;
use clap::Subcommand;
use ferry_coordinator::api::DeviceView;

use crate::client::Client;
use crate::output::{Table, ago, clip, json, or_dash};

#[derive(Subcommand)]
pub(crate) enum DevicesCommand {
    /// Every enrolled device.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(client: &Client, command: DevicesCommand) -> Result<()> {
    match command {
        DevicesCommand::List { json: as_json } => {
            let devices: Vec<DeviceView> = client.get("/devices").await?;
            if as_json {
                return json(&devices);
            }
            let mut table =
                Table::new(&["DEVICE", "SEEN", "MODEL", "ACTIVE", "PREV", "LAST ERROR"]);
            for d in devices {
                let seen = if d.connected {
                    "online".into()
                } else {
                    ago(d.last_seen)
                };
                if d.models.is_empty() {
                    table.row(vec![
                        d.id.clone(),
                        seen.clone(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ]);
                }
                for m in d.models {
                    let error = m
                        .last_error
                        .map(|e| clip(&format!("{} {}: {}", e.kind, e.version, e.message), 30));
                    table.row(vec![
                        d.id.clone(),
                        seen.clone(),
                        m.model.to_string(),
                        or_dash(m.active),
                        or_dash(m.previous),
                        or_dash(error),
                    ]);
                }
            }
            if table.is_empty() {
                println!("no devices enrolled");
            } else {
                table.print();
            }
            Ok(())
        }
    }
}
