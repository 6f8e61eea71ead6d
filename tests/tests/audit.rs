//! The audit trail's hash chain on a real coordinator: intact after real changes, then the
//! database file edited while the coordinator is stopped, as an intruder with the disk
//! could. Both the offline check (`ferry-coordinator --verify-audit`) and `ferryctl audit
//! --verify` name the first broken link.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use ferry_tests::{Binaries, Fleet, model_bytes};
use redb::ReadableTable;

const AUDIT: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("audit");

#[test]
fn an_edited_audit_entry_is_found_by_the_chain() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    fleet.publish("1.0.0", &model_bytes(1, 64 * 1024, true))?;
    fleet.set_prod("1.0.0", "the canary looked good")?;
    fleet.publish("1.1.0", &model_bytes(2, 64 * 1024, true))?;
    let c = &fleet.coordinator;
    let out = c.ctl(&["audit", "--verify"])?;
    ensure!(out.contains("intact"), "{out}");
    let head = out
        .lines()
        .find_map(|l| l.strip_prefix("head "))
        .context("a head is printed")?
        .to_owned();
    let listed = c.ctl(&["audit", "--action", "alias"])?;
    ensure!(
        listed.contains("alias.set") && !listed.contains("publish"),
        "{listed}"
    );
    // Filtered by the coordinator: by action, subject and time; an unknown filter is refused.
    let entries = |query: &str| -> Result<Vec<ferry_coordinator::api::AuditEntryView>> {
        let reply = c.get(&format!("/api/v1/audit?{query}"), "admin")?;
        ensure!(reply.status == 200, "{query}: {}", reply.body);
        Ok(serde_json::from_str(&reply.body)?)
    };
    let moves = entries("action=alias")?;
    ensure!(
        !moves.is_empty() && moves.iter().all(|e| e.action.starts_with("alias")),
        "{moves:?}"
    );
    let newer = entries("subject=1.1.0")?;
    ensure!(
        !newer.is_empty() && newer.iter().all(|e| e.subject.contains("1.1.0")),
        "{newer:?}"
    );
    ensure!(entries("since=4000000000")?.is_empty());
    ensure!(entries("until=1")?.is_empty());
    ensure!(c.get("/api/v1/audit?acton=alias", "admin")?.status == 400);
    // Newest first, as the console reads it: from the head, then on from the oldest seen.
    let all = entries("")?;
    let newest = entries("newest=true&limit=2")?;
    let expected: Vec<u64> = all.iter().rev().take(2).map(|e| e.seq).collect();
    ensure!(
        newest.iter().map(|e| e.seq).collect::<Vec<_>>() == expected,
        "{newest:?}"
    );
    let older = entries(&format!("before={}&limit=1000", expected[1]))?;
    ensure!(
        older.len() == all.len() - 2 && older.windows(2).all(|w| w[0].seq > w[1].seq),
        "{older:?}"
    );
    let newest_moves = entries("newest=true&action=alias")?;
    ensure!(
        newest_moves.iter().map(|e| e.seq).collect::<Vec<_>>()
            == moves.iter().rev().map(|e| e.seq).collect::<Vec<_>>()
    );
    ensure!(c.get("/api/v1/audit?after=1&before=3", "admin")?.status == 400);
    let by_subject = c.ctl(&["audit", "--subject", "1.1.0", "--hours", "1"])?;
    ensure!(
        by_subject.contains("publish") && !by_subject.contains("alias.set"),
        "{by_subject}"
    );

    // The coordinator stopped, someone rewrites why prod moved.
    fleet.coordinator.stop();
    let db = fleet.coordinator.data_dir.join("ferry.redb");
    let edited = {
        let db = redb::Database::open(&db)?;
        let txn = db.begin_write()?;
        let seq = {
            let mut table = txn.open_table(AUDIT)?;
            let (seq, mut bytes) = table
                .iter()?
                .filter_map(Result::ok)
                .map(|(k, v)| (k.value(), v.value().to_vec()))
                .find(|(_, v)| v.windows(6).any(|w| w == b"canary"))
                .context("the alias move is audited")?;
            let at = bytes
                .windows(6)
                .position(|w| w == b"canary")
                .context("found above")?;
            bytes[at..at + 6].copy_from_slice(b"CANARY");
            table.insert(seq, bytes.as_slice())?;
            seq
        };
        txn.commit()?;
        seq
    };

    let offline = Command::new(&Binaries::get()?.coordinator)
        .args([
            "--data-dir",
            &fleet.coordinator.data_dir.to_string_lossy(),
            "--verify-audit",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&offline.stdout);
    ensure!(
        !offline.status.success()
            && text.contains(&format!("BROKEN at entry {}", edited + 1))
            && text.contains(&format!("does not follow entry {edited}")),
        "{text}{}",
        String::from_utf8_lossy(&offline.stderr)
    );

    fleet.coordinator.restart()?;
    let c = &fleet.coordinator;
    let (err, _) = c.ctl_failing(&["audit", "--verify"])?;
    ensure!(
        err.contains(&format!("broken at entry {}", edited + 1)),
        "{err}"
    );
    let (err, _) = c.ctl_failing(&["audit", "--verify", "--anchor", &head])?;
    ensure!(err.contains("broken"), "{err}");
    Ok(())
}
