//! `ferryctl devices`: enrolled devices, what they run and their last error; enrollment
//! tokens; revoking a device; pinning one to a version.

use anyhow::Result;
use clap::Subcommand;
use ferry_coordinator::api::{
    CreateEnrollToken, DeviceView, EnrollTokenCreated, EnrollTokenView, PinDevice, PinView,
    RevokeDevice, UnpinDevice,
};
use ferry_coordinator::outln;

use crate::client::Client;
use crate::output::{Table, ago, clip, json, or_dash, timestamp};

#[derive(Subcommand)]
pub(crate) enum DevicesCommand {
    /// Every enrolled device.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an enrollment token for new devices; prints it once.
    EnrollToken {
        /// Name (say, the batch of devices it is for).
        #[arg(long, default_value = "devices")]
        name: String,
        /// How many devices may enroll with it [default: any number until it expires].
        #[arg(long)]
        uses: Option<u32>,
        /// Hours until it stops working [default: never].
        #[arg(long)]
        expires_hours: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enrollment tokens (never their secrets).
    EnrollTokens {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cut a device off at once: its session closes and it is refused from now on.
    Revoke {
        /// Device id.
        id: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Hold a device at a version of a model, whatever its alias or a rollout says (a rollout
    /// leaves it out); `unpin` lets it follow its alias again.
    Pin {
        /// Device id.
        id: String,
        /// The model.
        model: String,
        /// The version it runs while pinned.
        version: ferry_shared::Version,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let a pinned device follow its alias again.
    Unpin {
        /// Device id.
        id: String,
        /// The model.
        model: String,
        /// Why, for the audit trail.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Every pinned device.
    Pins {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(client: &Client, command: DevicesCommand) -> Result<()> {
    match command {
        DevicesCommand::EnrollToken {
            name,
            uses,
            expires_hours,
            json: as_json,
        } => {
            let created: EnrollTokenCreated = client
                .post_for(
                    "/devices/enroll-tokens",
                    &CreateEnrollToken {
                        name,
                        uses,
                        expires_hours,
                    },
                )
                .await?;
            if as_json {
                return json(&created);
            }
            outln!("{}", created.token);
            eprintln!(
                "enrollment token {} created ({}{}); it is shown only now",
                created.view.id,
                created.view.uses_left.map_or_else(
                    || "any number of devices".into(),
                    |n| format!("{n} device(s)")
                ),
                created
                    .view
                    .expires_at
                    .map_or_else(String::new, |t| format!(", until {}", timestamp(t)))
            );
            Ok(())
        }
        DevicesCommand::EnrollTokens { json: as_json } => {
            let tokens: Vec<EnrollTokenView> = client.get("/devices/enroll-tokens").await?;
            if as_json {
                return json(&tokens);
            }
            let mut table = Table::new(&["ID", "NAME", "USED", "LEFT", "EXPIRES", "CREATED"]);
            for t in &tokens {
                table.row(vec![
                    t.id.clone(),
                    t.name.clone(),
                    t.used.to_string(),
                    or_dash(t.uses_left),
                    or_dash(t.expires_at.map(timestamp)),
                    ago(t.created_at),
                ]);
            }
            if table.is_empty() {
                outln!("no enrollment tokens (the bootstrap token is a file)");
            } else {
                table.print();
            }
            Ok(())
        }
        DevicesCommand::Pin {
            id,
            model,
            version,
            reason,
        } => {
            let pinned: PinView = client
                .put_json(
                    &format!("/devices/{id}/pins/{model}"),
                    &PinDevice { version, reason },
                )
                .await?;
            outln!(
                "device {id} pinned to {} {}; it is told now",
                pinned.model,
                pinned.version
            );
            Ok(())
        }
        DevicesCommand::Unpin { id, model, reason } => {
            client
                .delete_json(
                    &format!("/devices/{id}/pins/{model}"),
                    &UnpinDevice { reason },
                )
                .await?;
            outln!("device {id} unpinned from {model}: it follows its alias again");
            Ok(())
        }
        DevicesCommand::Pins { json: as_json } => {
            let pins: Vec<PinView> = client.get("/pins").await?;
            if as_json {
                return json(&pins);
            }
            let mut table = Table::new(&["DEVICE", "MODEL", "VERSION", "BY", "WHEN", "WHY"]);
            for p in &pins {
                table.row(vec![
                    clip(&p.device, 16),
                    p.model.clone(),
                    p.version.to_string(),
                    p.by.clone(),
                    ago(p.at),
                    p.reason.clone(),
                ]);
            }
            if table.is_empty() {
                outln!("no device is pinned");
            } else {
                table.print();
            }
            Ok(())
        }
        DevicesCommand::Revoke { id, reason } => {
            client
                .post_json(&format!("/devices/{id}/revoke"), &RevokeDevice { reason })
                .await?;
            outln!("device {id} revoked; its session is closed");
            Ok(())
        }
        DevicesCommand::List { json: as_json } => {
            let devices: Vec<DeviceView> = client.get("/devices").await?;
            if as_json {
                return json(&devices);
            }
            let mut table =
                Table::new(&["DEVICE", "SEEN", "MODEL", "ACTIVE", "PREV", "LAST ERROR"]);
            for d in devices {
                let seen = if d.revoked_at.is_some() {
                    "revoked".into()
                } else if d.connected {
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
                outln!("no devices enrolled");
            } else {
                table.print();
            }
            Ok(())
        }
    }
}
