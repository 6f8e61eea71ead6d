//! Retention and garbage collection on a real coordinator with a real agent: a dry run that
//! changes nothing, then a collection that frees exactly the chunks only retired releases
//! used, keeps a retired release a device still holds, keeps chunks a live release shares,
//! and leaves every record; a release whose bytes went can no longer be shipped.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_coordinator::api::GcReport;
use ferry_shared::Digest;
use ferry_tests::{AgentSpec, Fleet, MODEL, chunks_of, model_bytes};

const WAIT: Duration = Duration::from_secs(60);
const MIB: usize = 1024 * 1024;
const RETENTION: &str =
    "[retention.archived]\nkeep_days = 0\n[retention.rejected]\nkeep_days = 0\n";

fn chunk_set(bytes: &[u8]) -> BTreeSet<Digest> {
    chunks_of(bytes).chunks.iter().map(|c| c.hash).collect()
}

#[test]
fn collection_frees_only_what_retired_releases_alone_used() -> Result<()> {
    let mut fleet = Fleet::start_configured(0, None, Some(RETENTION))?;
    fleet.add_agent(AgentSpec::named("device"))?;
    let v1 = model_bytes(1, 6 * MIB, true);
    let v2 = model_bytes(2, 6 * MIB, true);
    let mut v3 = v1[..5 * MIB].to_vec();
    v3.extend(model_bytes(3, MIB, false));
    let v4 = model_bytes(4, 6 * MIB, true);
    for (version, bytes) in [
        ("1.0.0", &v1),
        ("2.0.0", &v2),
        ("1.5.0", &v3),
        ("0.5.0", &v4),
    ] {
        fleet.publish(version, bytes)?;
    }
    fleet.set_prod("1.0.0", "base")?;
    fleet.wait_all_on("1.0.0", WAIT)?;
    fleet.set_prod("2.0.0", "next")?;
    fleet.wait_all_on("2.0.0", WAIT)?;
    let c = &fleet.coordinator;
    // 1.0.0 is retired but the device keeps it as its previous version; 1.5.0 shares most
    // of its chunks with 1.0.0; 0.5.0 shares nothing. (The retired releases are below
    // 2.0.0, so `latest`, on the newest stable release, protects none of them.)
    c.ctl(&["stage", MODEL, "1.0.0", "archived"])?;
    c.ctl(&["stage", MODEL, "1.5.0", "rejected"])?;
    c.ctl(&["stage", MODEL, "0.5.0", "archived"])?;
    let (c1, c2, c3, c4) = (
        chunk_set(&v1),
        chunk_set(&v2),
        chunk_set(&v3),
        chunk_set(&v4),
    );
    ensure!(
        c3.intersection(&c1).count() >= 3,
        "1.5.0 shares chunks with 1.0.0"
    );
    let expected: BTreeSet<Digest> = c4
        .iter()
        .chain(c3.iter().filter(|h| !c1.contains(h) && !c2.contains(h)))
        .copied()
        .collect();
    let on_disk =
        |set: &BTreeSet<Digest>| set.iter().filter(|h| fleet.chunk_file(h).exists()).count();

    let dry: GcReport = c.ctl_json(&["gc"])?;
    let purged: Vec<String> = dry
        .plan
        .purge
        .iter()
        .map(|d| d.version.to_string())
        .collect();
    ensure!(purged == ["0.5.0", "1.5.0"], "{purged:?}");
    ensure!(
        dry.plan.kept.len() == 1
            && dry.plan.kept[0].version.to_string() == "1.0.0"
            && dry.plan.kept[0].why.contains("1 device(s) hold it"),
        "{:?}",
        dry.plan.kept
    );
    ensure!(
        dry.plan.chunks == expected,
        "exactly the chunks no live release uses"
    );
    ensure!(!dry.applied && dry.bytes > 0);
    ensure!(
        on_disk(&expected) == expected.len(),
        "a dry run deletes nothing"
    );
    let text = c.ctl(&["gc"])?;
    ensure!(
        text.contains("would free") && text.contains("dry run"),
        "{text}"
    );

    let done: GcReport = c.ctl_json(&["gc", "--apply"])?;
    ensure!(done.applied && done.plan.chunks == expected && done.bytes == dry.bytes);
    ensure!(on_disk(&expected) == 0, "freed");
    ensure!(
        on_disk(&c1) == c1.len() && on_disk(&c2) == c2.len(),
        "live chunks stay"
    );
    let again: GcReport = c.ctl_json(&["gc"])?;
    ensure!(again.plan.purge.is_empty() && again.plan.chunks.is_empty() && again.orphans == 0);

    // The records stay, marked; a purged release cannot be shipped again.
    let listed = c.ctl(&["releases", "list"])?;
    ensure!(
        listed
            .lines()
            .any(|l| l.contains("0.5.0") && l.contains("(purged)")),
        "{listed}"
    );
    let (err, _) = c.ctl_failing(&["alias", "set", MODEL, "prod", "0.5.0"])?;
    ensure!(err.contains("bytes were freed"), "{err}");
    // An alias protects what it points at, `latest` too.
    c.ctl(&["stage", MODEL, "2.0.0", "archived"])?;
    let kept: GcReport = c.ctl_json(&["gc"])?;
    ensure!(
        kept.plan.purge.is_empty()
            && kept
                .plan
                .kept
                .iter()
                .any(|d| d.version.to_string() == "2.0.0"
                    && d.why.contains("alias latest points at it")
                    && d.why.contains("alias prod points at it")),
        "{:?}",
        kept.plan.kept
    );
    let audit = c.get("/api/v1/audit?limit=1000", "admin")?.body;
    ensure!(
        audit.matches("gc.purge").count() == 2,
        "each purge is audited"
    );
    // The device may still go back to the retired release it holds.
    fleet.set_prod("1.0.0", "roll back")?;
    fleet.wait_all_on("1.0.0", WAIT)?;
    ensure!(fleet.agents[0].current_bytes("model.bin")? == v1);
    Ok(())
}

/// The bytes of an upload nobody resumed for a week go with a collection; a recent one stays
/// for its client to continue.
#[test]
fn a_collection_removes_uploads_abandoned_for_a_week() -> Result<()> {
    let fleet = Fleet::start(0, None)?;
    let c = &fleet.coordinator;
    let dir = c.data_dir.join("chunks/uploads");
    std::fs::create_dir_all(&dir)?;
    let part = |seed: &[u8]| dir.join(format!("{}.part", Digest::of(seed).to_hex()));
    let (abandoned, recent) = (part(b"abandoned"), part(b"recent"));
    std::fs::write(&abandoned, vec![7u8; 100_000])?;
    std::fs::write(&recent, vec![7u8; 1_000])?;
    let eight_days_ago = std::time::SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&abandoned)?
        .set_modified(eight_days_ago)?;

    let dry: GcReport = c.ctl_json(&["gc"])?;
    ensure!(dry.stale_uploads == 1 && dry.bytes >= 100_000, "{dry:?}");
    ensure!(abandoned.exists(), "a dry run deletes nothing");
    let text = c.ctl(&["gc"])?;
    ensure!(text.contains("1 interrupted upload(s)"), "{text}");
    let done: GcReport = c.ctl_json(&["gc", "--apply"])?;
    ensure!(done.applied && done.stale_uploads == 1, "{done:?}");
    ensure!(!abandoned.exists() && recent.exists());
    Ok(())
}
