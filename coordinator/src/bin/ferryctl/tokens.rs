//! `ferryctl tokens`: API tokens with a role and optional model scope (admin only). A new
//! token is printed once; the coordinator keeps only a hash of it.

use anyhow::Result;
use clap::Subcommand;
use ferry_coordinator::api::TokenRole;
use ferry_coordinator::api::{CreateToken, TokenCreated, TokenView};
use ferry_coordinator::outln;

use crate::client::Client;
use crate::output::{Table, ago, json, or_dash, timestamp};

#[derive(Subcommand)]
pub(crate) enum TokensCommand {
    /// Create a token; prints it once.
    Create {
        /// Name for people and the audit trail (e.g. `ci-release`, `alice`).
        name: String,
        /// viewer, publisher, approver, operator or admin.
        #[arg(long)]
        role: TokenRole,
        /// Only these models (repeat the flag); all when absent.
        #[arg(long = "model")]
        models: Vec<String>,
        /// Days until it stops working.
        #[arg(long)]
        expires_days: Option<u64>,
        /// The person it belongs to [default: NAME]; approvals count people, so a person's
        /// tokens approve a release once between them.
        #[arg(long)]
        owner: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every token (never their secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop a token from working, at once.
    Revoke {
        /// Token id (the part after `fy_`, before the second `_`).
        id: String,
    },
}

pub(crate) async fn run(client: &Client, command: TokensCommand) -> Result<()> {
    match command {
        TokensCommand::Create {
            name,
            role,
            models,
            expires_days,
            owner,
            json: as_json,
        } => {
            let created: TokenCreated = client
                .post_for(
                    "/tokens",
                    &CreateToken {
                        name,
                        role,
                        models,
                        expires_days,
                        owner,
                    },
                )
                .await?;
            if as_json {
                return json(&created);
            }
            outln!("{}", created.token);
            eprintln!(
                "token {} ({}) created; it is shown only now",
                created.view.name, created.view.role
            );
            Ok(())
        }
        TokensCommand::List { json: as_json } => {
            let tokens: Vec<TokenView> = client.get("/tokens").await?;
            if as_json {
                return json(&tokens);
            }
            let mut table = Table::new(&["ID", "NAME", "ROLE", "MODELS", "CREATED", "STATE"]);
            for t in &tokens {
                let state = match (t.revoked_at, t.expires_at) {
                    (Some(at), _) => format!("revoked {}", ago(at)),
                    (None, Some(at)) if at <= crate::output::now() => "expired".into(),
                    (None, Some(at)) => format!("until {}", &timestamp(at)[..10]),
                    (None, None) => "active".into(),
                };
                table.row(vec![
                    t.id.clone(),
                    t.name.clone(),
                    t.role.to_string(),
                    or_dash((!t.models.is_empty()).then(|| t.models.join(","))),
                    ago(t.created_at),
                    state,
                ]);
            }
            if table.is_empty() {
                outln!("no API tokens (the bootstrap admin and viewer tokens are files)");
            } else {
                table.print();
            }
            Ok(())
        }
        TokensCommand::Revoke { id } => {
            client.delete(&format!("/tokens/{id}")).await?;
            outln!("token {id} revoked");
            Ok(())
        }
    }
}
