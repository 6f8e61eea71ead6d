//! `ferry-fleet-sim`: many simulated agents, each a real QUIC session speaking Ferry's
//! protocol (identity proof, enrollment, reports), against one real coordinator process.
//! Measures, and prints as a table (asserts nothing):
//! * coordinator RSS per connected device;
//! * `alias set` → every connected agent has received its new desired state;
//! * a rollout whose canary wave fails its install gate: from the rollback decision until
//!   99 % of the canary devices have been told, switched back and reported the old version.
//!
//! Run: `cargo run --release -p ferry-tests --bin ferry-fleet-sim [-- --agents N]`
//! (default 10,000; `--per-endpoint N` sessions share one UDP socket, default 250;
//! `--no-reports`: agents do not report back, which isolates the cost of pushing;
//! `--coordinators N`: N coordinators on one PostgreSQL database and one S3 bucket, started
//! here as the tests start them, the agents spread over them, `alias set` on the last one,
//! with PostgreSQL's commits and row writes per second while the fleet is idle;
//! `--heartbeat-secs N`: the coordinators tell agents to report every N seconds, default 15
//! as in production, and the simulated agents do, each at its own phase, as real ones do;
//! 0 = they report only when told something; `--console`: also time the console's pages in
//! headless Chromium with the whole fleet enrolled). With `FERRY_SIM_KEEP=DIR` the coordinators'
//! data directories and logs stay in DIR.
//! Simulated agents install instantly: they report the version they were told to run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_coordinator::api::RolloutView;
use ferry_coordinator::testkit::{PostgresServer, S3Server};
use ferry_shared::rollout::{Phase as RolloutPhase, Plan, Selector};
use ferry_shared::sign::DEVICE_AUTH_CONTEXT;
use ferry_shared::wire::io::{read_frame, read_preamble, write_frame, write_preamble};
use ferry_shared::wire::{
    DEVICE_AUTH_EXPORTER_LABEL, DeviceId, DeviceReport, ErrorKind, Follow, Hello, InstallError,
    ModelReport, ToAgent, ToCoordinator, UpdatePhase,
};
use ferry_shared::{SecretKey, Version};
use ferry_tests::procfs::status_kib;
use ferry_tests::{Cadence, Coordinator, Fleet, MODEL, model_bytes};

/// Every desired state each simulated agent was told, with when.
#[derive(Default)]
struct Board {
    /// A lock per agent: the bench scanning them all must not stall agents being told. With
    /// one lock over all, a scan of 50,000 agents every 50 ms held up the simulator's runtime
    /// for a tenth of its time, and the push figures grew with the fleet for that alone.
    told: Vec<Mutex<Vec<(Version, Instant)>>>,
    /// Desired states received by all agents together; a wait scans `told` only once enough
    /// have arrived for the scan to succeed.
    told_events: AtomicUsize,
    /// One canary device fails its install of the bad version, to trip the gate.
    failed_one: AtomicBool,
    /// Agents do not report back (`--no-reports`): isolates the cost of pushing.
    quiet_agents: bool,
    /// Agents report at the heartbeat the coordinator names, as real ones do.
    heartbeats: bool,
    /// The measurements are done; sessions ending now are not errors.
    done: AtomicBool,
    /// Every connected agent's connection, for its QUIC statistics.
    connections: Mutex<Vec<quinn::Connection>>,
}

/// What the agents' connections sent and received, summed.
#[derive(Clone, Copy, Default)]
struct Traffic {
    sent: u64,
    received: u64,
    lost: u64,
    /// Frames the agents sent and received, by kind: what the datagrams carried.
    frames_sent: Frames,
    frames_received: Frames,
}

/// What a counter grew by from `then` to `now`, per device.
fn per_device(now: u64, then: u64, devices: usize) -> f64 {
    now.saturating_sub(then) as f64 / devices.max(1) as f64
}

/// QUIC frames by the kinds a push and a report exchange.
#[derive(Clone, Copy, Default)]
struct Frames {
    stream: u64,
    acks: u64,
    ping: u64,
    flow_control: u64,
    ack_frequency: u64,
    immediate_ack: u64,
    other: u64,
}

impl Frames {
    fn of(f: &quinn::FrameStats) -> Frames {
        Frames {
            stream: f.stream,
            acks: f.acks,
            ping: f.ping,
            flow_control: f.max_data + f.max_stream_data + f.max_streams_bidi,
            ack_frequency: f.ack_frequency,
            immediate_ack: f.immediate_ack,
            other: f.new_connection_id
                + f.retire_connection_id
                + f.stream_data_blocked
                + f.data_blocked
                + f.new_token,
        }
    }

    fn plus(self, o: Frames) -> Frames {
        Frames {
            stream: self.stream + o.stream,
            acks: self.acks + o.acks,
            ping: self.ping + o.ping,
            flow_control: self.flow_control + o.flow_control,
            ack_frequency: self.ack_frequency + o.ack_frequency,
            immediate_ack: self.immediate_ack + o.immediate_ack,
            other: self.other + o.other,
        }
    }

    /// Per device, from `before` to now.
    fn per_device_since(&self, before: Frames, devices: usize) -> String {
        let per = |now, then| per_device(now, then, devices);
        format!(
            "stream {:.1}, ack {:.1}, ping {:.1}, flow control {:.1}, ack frequency {:.2}, immediate ack {:.2}, other {:.2}",
            per(self.stream, before.stream),
            per(self.acks, before.acks),
            per(self.ping, before.ping),
            per(self.flow_control, before.flow_control),
            per(self.ack_frequency, before.ack_frequency),
            per(self.immediate_ack, before.immediate_ack),
            per(self.other, before.other)
        )
    }
}

impl Traffic {
    /// Per device, from `before` to now: datagrams sent, received and declared lost.
    fn per_device_since(&self, before: Traffic, devices: usize) -> String {
        let per = |now, then| per_device(now, then, devices);
        format!(
            "{:.1} sent, {:.1} received, {:.2} declared lost; frames sent: {}; frames received: {}",
            per(self.sent, before.sent),
            per(self.received, before.received),
            per(self.lost, before.lost),
            self.frames_sent
                .per_device_since(before.frames_sent, devices),
            self.frames_received
                .per_device_since(before.frames_received, devices)
        )
    }
}

impl Board {
    /// The agents' connections' datagrams so far.
    fn traffic(&self) -> Traffic {
        let connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        connections.iter().fold(Traffic::default(), |t, c| {
            let stats = c.stats();
            Traffic {
                sent: t.sent + stats.udp_tx.datagrams,
                received: t.received + stats.udp_rx.datagrams,
                lost: t.lost + stats.path.lost_packets,
                frames_sent: t.frames_sent.plus(Frames::of(&stats.frame_tx)),
                frames_received: t.frames_received.plus(Frames::of(&stats.frame_rx)),
            }
        })
    }

    fn told_events(&self) -> usize {
        self.told_events.load(Ordering::Relaxed)
    }

    /// When each of `among` was first told `version` after `since`, sorted.
    fn times(&self, version: &Version, among: &[usize], since: Instant) -> Vec<Instant> {
        let mut out: Vec<Instant> = among
            .iter()
            .filter_map(|i| {
                self.told
                    .get(*i)?
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .find(|(v, at)| v == version && *at > since)
                    .map(|(_, at)| *at)
            })
            .collect();
        out.sort();
        out
    }
}

/// Many simulated agents (real QUIC sessions speaking Ferry's protocol) against one real
/// coordinator: coordinator RSS per device, `alias set` until every agent is told, and an
/// automatic rollback of a failing canary wave. Prints a table; asserts nothing.
#[derive(clap::Parser)]
#[command(name = "ferry-fleet-sim")]
struct Args {
    /// Simulated devices.
    #[arg(long, default_value_t = 10_000)]
    agents: usize,
    /// Sessions sharing one UDP socket.
    #[arg(long, default_value_t = 250, value_parser = clap::value_parser!(u64).range(1..))]
    per_endpoint: u64,
    /// Agents do not report back, which isolates the cost of pushing.
    #[arg(long)]
    no_reports: bool,
    /// Coordinators serving the fleet; more than one share a PostgreSQL database and an S3
    /// bucket (needs scripts/install-postgres.sh and scripts/install-seaweedfs.sh).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=8))]
    coordinators: u64,
    /// How often agents report when nothing happens, in seconds (the coordinators tell them
    /// so); 0: only when told something.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(0..=3600))]
    heartbeat_secs: u32,
    /// Also time the console's pages in headless Chromium with the whole fleet enrolled
    /// (needs scripts/install-chromium.sh), beside the API calls they make.
    #[arg(long)]
    console: bool,
    #[command(flatten)]
    build: ferry_tests::BuildFlag,
}

fn main() -> Result<()> {
    let args = <Args as clap::Parser>::parse();
    args.build.apply();
    let agents = args.agents;
    let per_endpoint = usize::try_from(args.per_endpoint)?;
    let shared = (args.coordinators > 1).then(Shared::start).transpose()?;
    let config = |node: &str| shared.as_ref().map(|s| s.config(node));
    let cadence = Cadence {
        heartbeat_secs: args.heartbeat_secs.max(1),
        ..Cadence::FLEET_BENCH
    };
    let fleet = Fleet::start_at(
        0,
        std::env::var_os("FERRY_SIM_KEEP")
            .as_deref()
            .map(std::path::Path::new),
        config("a").as_deref(),
        cadence,
    )?;
    let mut others = Vec::new();
    for k in 1..args.coordinators {
        let name = format!("n{k}");
        let text = config(&name).context("shared stores")?;
        others.push(fleet.start_node(&name, &text, cadence)?);
    }
    let nodes: Vec<&Coordinator> = std::iter::once(&fleet.coordinator).chain(&others).collect();
    for v in ["1.0.0", "2.0.0", "3.0.0"] {
        fleet.publish(v, &model_bytes(v.len() as u64, 64 * 1024, true))?;
    }
    fleet.set_prod("1.0.0", "sim")?;
    let pids: Vec<u32> = nodes.iter().filter_map(|n| n.pid()).collect();
    let rss = || -> Result<u64> { pids.iter().map(|p| status_kib(*p, "VmRSS")).sum() };
    let rss_before = rss()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let board = Arc::new(Board {
        told: (0..agents).map(|_| Mutex::new(Vec::new())).collect(),
        quiet_agents: args.no_reports,
        heartbeats: args.heartbeat_secs > 0 && !args.no_reports,
        ..Board::default()
    });
    let token = std::fs::read_to_string(fleet.coordinator.data_dir.join("enrollment.token"))?
        .trim()
        .to_owned();
    let pin = fleet.coordinator.fingerprint.clone();
    let addrs: Vec<std::net::SocketAddr> = nodes.iter().map(|n| n.quic).collect();
    let v1: Version = "1.0.0".parse()?;

    // Connect everyone, a bounded number of handshakes at a time.
    let start = Instant::now();
    let everyone: Vec<usize> = (0..agents).collect();
    let keys: Vec<SecretKey> = (0..agents)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            SecretKey::from_seed(&seed)
        })
        .collect();
    let ids: Vec<DeviceId> = keys.iter().map(|k| DeviceId::of(&k.public())).collect();
    // The endpoints' drivers read their sockets on a runtime of their own, as the
    // coordinator's does: on the agents' runtime they would read for 50 µs per turn behind
    // tens of thousands of agent tasks, acknowledgements would wait there, and the agents would
    // time out and probe the coordinator, a load no real device (idle but for its one session)
    // puts on it.
    let receive = ferry_coordinator::agents::quic::receive_runtime()?;
    runtime.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(64));
        let mut endpoint = None;
        for (i, key) in keys.into_iter().enumerate() {
            if i % per_endpoint == 0 {
                // Big socket buffers, as the coordinator has: hundreds of simulated devices
                // share each socket, and drops there would be the simulator's, not Ferry's.
                let socket = ferry_coordinator::agents::quic::udp_socket("127.0.0.1:0".parse()?)?;
                let _inside = receive.enter();
                let runtime = quinn::default_runtime().context("no runtime for QUIC")?;
                endpoint = Some(quinn::Endpoint::new(
                    quinn::EndpointConfig::default(),
                    None,
                    socket,
                    runtime,
                )?);
            }
            let endpoint = endpoint.clone().context("endpoint")?;
            let (client, board, token, gate) = (
                ferry_agent::tls::client_config(&pin, &key)?.0,
                board.clone(),
                token.clone(),
                gate.clone(),
            );
            let (v1, board2) = (v1.clone(), board.clone());
            let addr_of = {
                let addrs = addrs.clone();
                move |i: usize| addrs[i % addrs.len()]
            };
            tokio::spawn(async move {
                let permit = gate.acquire_owned().await;
                let result = sim_agent(
                    i,
                    key,
                    endpoint,
                    client,
                    addr_of(i),
                    token,
                    v1,
                    board,
                    permit.ok(),
                )
                .await;
                if let Err(e) = result
                    && !board2.done.load(Ordering::Relaxed)
                {
                    eprintln!("agent {i}: {e:#}");
                }
            });
        }
        anyhow::Ok(())
    })?;
    wait(
        &board,
        "every agent connected and told 1.0.0",
        // 100,000 agents took 470 s to connect here, heartbeats running meanwhile.
        Duration::from_secs(600) + Duration::from_millis(10) * agents as u32,
        |b| b.told_events() >= agents && b.times(&v1, &everyone, start).len() == agents,
    )?;
    let connect_time = start.elapsed();
    eprintln!("all {agents} agents connected; measuring in 2 s");
    std::thread::sleep(Duration::from_secs(2));
    let rss_after = rss()?;
    let database = match &shared {
        Some(shared) => Some(shared.writes_per_second(Duration::from_secs(10))?),
        None => None,
    };

    // alias set → every agent told.
    let v2: Version = "2.0.0".parse()?;
    let start = Instant::now();
    let mark = board.told_events();
    let quiet = board.traffic();
    // On the last coordinator: with several, the others hear of it through the database.
    nodes[nodes.len() - 1].ctl(&["alias", "set", MODEL, "prod", "2.0.0", "--reason", "sim"])?;
    wait(
        &board,
        "every agent told 2.0.0",
        Duration::from_secs(120),
        |b| b.told_events() >= mark + agents && b.times(&v2, &everyone, start).len() == agents,
    )?;
    let told = board.times(&v2, &everyone, start);
    let at = |q: f64| {
        let i = ((told.len() as f64 * q).ceil() as usize).clamp(1, told.len().max(1)) - 1;
        told.get(i).map_or(Duration::ZERO, |t| *t - start)
    };
    let alias_time = at(1.0);
    let alias_spread = format!(
        "{:.0} ms (half told by {:.0} ms, 99 % by {:.0} ms)",
        alias_time.as_secs_f64() * 1000.0,
        at(0.5).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0
    );
    std::thread::sleep(Duration::from_secs(2));
    let push_traffic = board.traffic().per_device_since(quiet, agents);
    let traffic_row = format!(
        "| QUIC datagrams per agent, from `alias set` until 2 s after the last was told | {push_traffic} | |"
    );
    if board.quiet_agents {
        // Without reports no gate can decide: the push figures are all there is.
        println!(
            "| `alias set` → every agent told (agents not reporting back) | {alias_spread} | all < 2 s, 99 % < 1 s |"
        );
        println!("{traffic_row}");
        board.done.store(true, Ordering::Relaxed);
        return Ok(());
    }

    // A rollout of 3.0.0 whose canary fails its install gate.
    let v3: Version = "3.0.0".parse()?;
    let id = "sim-bad";
    let plan = Plan::with_default_waves(id, MODEL.parse()?, v3.clone(), Selector::all());
    let canary: Vec<usize> = ids
        .iter()
        .enumerate()
        .filter(|(_, d)| plan.bucket(d) < 500)
        .map(|(i, _)| i)
        .collect();
    let min_samples = (canary.len() * 4 / 5).max(1);
    let plan_file = fleet.dir.join("sim-plan.json");
    std::fs::write(
        &plan_file,
        serde_json::to_vec(&serde_json::json!({
            "id": id, "model": MODEL, "version": "3.0.0",
            "waves": [
                {"percent": 5, "bake_secs": 3600, "gates": [
                    {"kind": "InstallFailures", "threshold": 0.0, "min_samples": min_samples}]},
                {"percent": 100, "bake_secs": 3600},
            ],
        }))?,
    )?;
    let start = Instant::now();
    let mark = board.told_events();
    fleet
        .coordinator
        .ctl(&["rollout", "create", "--plan", &plan_file.to_string_lossy()])?;
    let mut decided = None;
    let mut last_view = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let view: RolloutView = fleet.coordinator.ctl_json(&["rollout", "status", id])?;
        if view.phase == RolloutPhase::RolledBack {
            decided = Some(Instant::now());
            break;
        }
        last_view = Some(view);
        std::thread::sleep(Duration::from_millis(20));
    }
    let decided = decided.with_context(|| {
        let why = last_view.map_or_else(String::new, |v| {
            format!(
                ": {:?}, devices {:?}, gates {:?}, {} without an outcome",
                v.phase, v.devices, v.gates, v.stragglers_total
            )
        });
        format!("the rollout never rolled back within 120 s{why}")
    })?;
    let need = (canary.len() * 99).div_ceil(100);
    wait(
        &board,
        "99 % of the canary back on 2.0.0",
        Duration::from_secs(120),
        |b| b.told_events() >= mark + need && b.times(&v2, &canary, start).len() >= need,
    )?;
    // Each node's own 99 %, which the slowest node reaches after the fleet's (a node whose
    // canary devices are not 99 % back 30 s on shows as "-").
    let per_node_need = |k: usize| {
        let theirs = canary.iter().filter(|i| *i % nodes.len() == k).count();
        (theirs * 99 / 100).max(1)
    };
    let _ = wait(
        &board,
        "99 % of each node's canary back on 2.0.0",
        Duration::from_secs(30),
        |b| {
            (0..nodes.len()).all(|k| {
                let theirs: Vec<usize> = canary
                    .iter()
                    .copied()
                    .filter(|i| i % nodes.len() == k)
                    .collect();
                b.times(&v2, &theirs, start).len() >= per_node_need(k)
            })
        },
    );
    let told_v3 = board.times(&v3, &canary, start);
    let back = board.times(&v2, &canary, start);
    let canary_time = told_v3.last().map(|t| *t - start);
    let returned = back.get(need.saturating_sub(1)).copied();
    let first_told = back.first().copied();
    // Per coordinator (agent i is on node i mod N): when 99 % of its canary devices were back.
    let per_node: Vec<String> = (0..nodes.len())
        .map(|k| {
            let theirs: Vec<usize> = canary
                .iter()
                .copied()
                .filter(|i| i % nodes.len() == k)
                .collect();
            let times = board.times(&v2, &theirs, start);
            // 99 % rounded down: the one device that failed its install may be among them.
            let at = times
                .get((theirs.len() * 99 / 100).saturating_sub(1))
                .copied();
            match (at, first_told) {
                (Some(at), Some(first)) => format!(
                    "{:.0} ms",
                    at.saturating_duration_since(first).as_secs_f64() * 1000.0
                ),
                _ => "-".into(),
            }
        })
        .collect();

    let heartbeat = if board.heartbeats {
        format!("every agent reporting every {} s", args.heartbeat_secs)
    } else {
        "the agents report only when told something".to_owned()
    };
    println!("| figure ({} coordinator(s)) | value | goal |", nodes.len());
    println!("|---|---|---|");
    if let Some((commits, rows)) = database {
        println!(
            "| PostgreSQL while the fleet is idle ({heartbeat}) | {commits:.0} commits/s, {rows:.0} rows written/s | |"
        );
    }
    println!(
        "| simulated agents connected (QUIC sessions) | {} in {:.1} s | |",
        board
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len(),
        connect_time.as_secs_f64()
    );
    println!(
        "| coordinator RSS per connected device (all coordinators) | {:.1} KiB ({} → {} KiB) | ≤ 32 KiB |",
        (rss_after.saturating_sub(rss_before)) as f64 / agents as f64,
        rss_before,
        rss_after
    );
    println!(
        "| `alias set` → every agent told its new desired state | {alias_spread} | all < 2 s, 99 % < 1 s |"
    );
    println!("{traffic_row}");
    println!(
        "| rollout create → every canary device ({} of {}) told 3.0.0 | {} of them, the last after {:.0} ms | |",
        canary.len(),
        agents,
        told_v3.len(),
        canary_time.unwrap_or_default().as_secs_f64() * 1000.0
    );
    match (returned, first_told) {
        (Some(r), Some(f)) => println!(
            "| automatic rollback → 99 % of the canary back and reported (from the first rollback push; from the status poll) | {:.0} ms; {:.0} ms | < 1 s |",
            r.saturating_duration_since(f).as_secs_f64() * 1000.0,
            r.saturating_duration_since(decided).as_secs_f64() * 1000.0
        ),
        _ => bail!("rollback times missing"),
    }
    if nodes.len() > 1 {
        println!(
            "| … of those, 99 % of each coordinator's canary devices back (the driving one first) | {} | |",
            per_node.join(", ")
        );
    }
    if args.console {
        for row in console_figures(&fleet, id)? {
            println!("{row}");
        }
    }
    board.done.store(true, Ordering::Relaxed);
    drop(runtime);
    Ok(())
}

/// Loads of each console page measured in a browser.
const LOADS: usize = 5;

/// The console's pages timed in headless Chromium, each the median of [`LOADS`] loads from
/// a fresh navigation until its first render finished (the page's own `ferry-rendered` mark),
/// beside the API calls each page makes, timed from here on the same machine.
fn console_figures(fleet: &Fleet, rollout: &str) -> Result<Vec<String>> {
    use ferry_tests::browser::Browser;
    let c = &fleet.coordinator;
    let viewer = c.token("viewer")?;
    let browser = Browser::launch(&fleet.dir, 1366, 768)?;
    let base = format!("http://{}/", c.http);
    let page = browser.open(&format!("{base}#token={viewer}"))?;
    page.wait_for_element("#devices-total")?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut rows = Vec::new();
    let one = format!("/rollouts/{rollout}");
    let listed = format!("{one}?standing=targeted");
    let listed_calls = [
        one.clone(),
        format!("{one}/devices?standing=targeted&limit=50"),
    ];
    let first: Vec<serde_json::Value> =
        serde_json::from_str(&c.get("/api/v1/devices?limit=1", "viewer")?.body)?;
    let device = format!(
        "/devices/{}",
        first
            .first()
            .and_then(|d| d["id"].as_str())
            .context("no device enrolled")?
    );
    let pages = [
        (
            "fleet",
            "/",
            "#devices-total",
            vec![
                "/fleet/status",
                "/fleet/fragmentation?days=7&behind=100",
                "/rollouts?active=true",
            ],
        ),
        (
            "devices (first 50)",
            "/devices",
            "#devices",
            vec!["/devices?limit=51"],
        ),
        (
            "one rollout",
            one.as_str(),
            "#rollout-summary",
            vec![one.as_str()],
        ),
        (
            "one rollout, its devices in force (first 50)",
            listed.as_str(),
            "#standing-devices",
            listed_calls.iter().map(String::as_str).collect(),
        ),
        (
            "one device",
            device.as_str(),
            "#device-models",
            vec![device.as_str(), "/pins"],
        ),
        (
            "audit",
            "/audit",
            "#audit-entries",
            vec!["/audit?newest=true&limit=100"],
        ),
    ];
    for (name, route, ready, calls) in pages {
        let mut loads = Vec::new();
        for _ in 0..LOADS {
            page.goto("about:blank")?;
            page.goto(&format!("{base}#{route}"))?;
            page.wait_for_element(ready)?;
            loads.push(
                page.eval::<f64>("performance.getEntriesByName('ferry-rendered')[0].startTime")?,
            );
        }
        let mut api = Vec::new();
        let mut bytes = 0;
        for _ in 0..LOADS {
            let start = Instant::now();
            bytes = 0;
            for call in &calls {
                let reply = c.get(&format!("/api/v1{call}"), "viewer")?;
                ensure_ok(&reply, call)?;
                bytes += reply.raw.len();
            }
            api.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        rows.push(format!(
            "| console page `{name}`: navigation → rendered (its API calls alone, one after another) | {:.0} ms ({:.0} ms, {} KiB) | < 1 s |",
            median(loads),
            median(api),
            bytes / 1024
        ));
    }
    // The device list whole, as the page read it before it paged: the anchor for paging.
    let start = Instant::now();
    let whole = c.get("/api/v1/devices", "viewer")?;
    ensure_ok(&whole, "/devices")?;
    rows.push(format!(
        "| anchor: every device in one reply (`GET /devices`, what the page read before it paged) | {:.0} ms, {} KiB | |",
        start.elapsed().as_secs_f64() * 1000.0,
        whole.raw.len() / 1024
    ));
    Ok(rows)
}

fn ensure_ok(reply: &ferry_tests::http::Reply, call: &str) -> Result<()> {
    if reply.status != 200 {
        bail!("{call}: HTTP {}: {}", reply.status, reply.body);
    }
    Ok(())
}

/// The PostgreSQL database and S3 bucket several coordinators share, on servers started here.
struct Shared {
    url: String,
    /// The `[store]` lines naming the bucket.
    chunks: String,
    /// Holds the S3 credentials' file.
    _dir: tempfile::TempDir,
}

impl Shared {
    fn start() -> Result<Self> {
        let url = PostgresServer::shared().fresh_database();
        let dir = tempfile::tempdir()?;
        let chunks = S3Server::shared()
            .chunk_settings(dir.path())
            .map_err(anyhow::Error::msg)?;
        Ok(Self {
            url,
            chunks,
            _dir: dir,
        })
    }

    /// Node `node`'s configuration.
    fn config(&self, node: &str) -> String {
        format!(
            "node_name = \"{node}\"\n[store]\nmetadata = \"{url}\"\n{chunks}",
            url = self.url,
            chunks = self.chunks,
        )
    }

    /// Commits and rows written per second in the database over `window`.
    fn writes_per_second(&self, window: Duration) -> Result<(f64, f64)> {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls)?;
        let mut sample = || -> Result<(i64, i64)> {
            let row = client.query_one(
                "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted \
                 FROM pg_stat_database WHERE datname = current_database()",
                &[],
            )?;
            Ok((row.try_get(0)?, row.try_get(1)?))
        };
        let (c0, r0) = sample()?;
        let start = Instant::now();
        std::thread::sleep(window);
        // The statistics reach the view when a backend reports them: give it a moment.
        std::thread::sleep(Duration::from_millis(600));
        let (c1, r1) = sample()?;
        let secs = start.elapsed().as_secs_f64();
        Ok(((c1 - c0) as f64 / secs, (r1 - r0) as f64 / secs))
    }
}

fn wait(board: &Board, what: &str, timeout: Duration, done: impl Fn(&Board) -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done(board) {
            return Ok(());
        }
        // Looking costs the simulated agents a lock over all of them; the figures come from
        // the times they recorded, so looking less often loses no precision.
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out waiting for {what}")
}

#[allow(clippy::too_many_arguments)]
async fn sim_agent(
    i: usize,
    key: SecretKey,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    addr: std::net::SocketAddr,
    token: String,
    v1: Version,
    board: Arc<Board>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<()> {
    let conn = endpoint.connect_with(client, addr, "localhost")?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    write_preamble(&mut send).await?;
    let mut material = [0u8; 32];
    conn.export_keying_material(&mut material, DEVICE_AUTH_EXPORTER_LABEL, b"")
        .map_err(|_| anyhow::anyhow!("no keying material"))?;
    let model: ferry_shared::ModelName = MODEL.parse()?;
    let report = |held: &Held| DeviceReport {
        models: vec![ModelReport {
            model: model.clone(),
            active: held.active.clone(),
            previous: held.previous.clone(),
            candidate: None,
            phase: UpdatePhase::Idle,
            last_error: held.last_error.clone(),
        }],
        ..DeviceReport::default()
    };
    let mut held = Held {
        active: Some(v1.clone()),
        ..Held::default()
    };
    let hello = Hello {
        device_key: key.public(),
        proof: key.sign(DEVICE_AUTH_CONTEXT, &material).to_vec(),
        enrollment_token: Some(token),
        agent_version: "sim".into(),
        labels: BTreeMap::from([("fleet".to_owned(), "sim".to_owned())]),
        follows: vec![Follow {
            model: model.clone(),
            alias: "prod".parse()?,
        }],
        report: report(&held),
    };
    write_frame(&mut send, &ToCoordinator::Hello(Box::new(hello))).await?;
    read_preamble(&mut recv).await?;
    let heartbeat_secs = match read_frame::<_, ToAgent>(&mut recv, "welcome").await? {
        Some(ToAgent::Welcome(welcome)) => welcome.heartbeat_secs,
        other => bail!("no welcome: {other:?}"),
    };
    board
        .connections
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(conn.clone());
    drop(permit);
    // Pushes are read on a task of their own, so that a heartbeat never cuts a read short.
    let (pushes_tx, mut pushes) = tokio::sync::mpsc::channel(4);
    let reader = tokio::spawn(async move {
        while let Ok(Some(message)) = read_frame::<_, ToAgent>(&mut recv, "push").await {
            if pushes_tx.send(message).await.is_err() {
                break;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    // Each agent beats at its own phase, as devices started at different times do.
    let period = Duration::from_secs(u64::from(heartbeat_secs.max(1)));
    let phase = Duration::from_millis((i as u64 * 7919) % period.as_millis().max(1) as u64);
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + phase, period);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            message = pushes.recv() => message,
            _ = heartbeat.tick(), if board.heartbeats => {
                write_frame(&mut send, &ToCoordinator::Report(report(&held))).await?;
                continue;
            }
        };
        match message {
            Some(ToAgent::Desired(d)) => {
                let Some(release) = d.release else { continue };
                let version = release.version;
                // Told now: the time is taken on receipt, not after the report is sent.
                if let Some(told) = board.told.get(i) {
                    let at = Instant::now();
                    told.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((version.clone(), at));
                    board.told_events.fetch_add(1, Ordering::Relaxed);
                }
                if Some(&version) != held.active.as_ref() {
                    if version.to_string() == "3.0.0"
                        && !board.failed_one.swap(true, Ordering::SeqCst)
                    {
                        // A failure the agent does not retry: a lost download is retried
                        // and so is no outcome for the gate (rollouts::facts_of).
                        held.last_error = Some(InstallError {
                            version: version.clone(),
                            kind: ErrorKind::Integrity,
                            message: "simulated failure: the artifact does not verify".into(),
                            at: 0,
                        });
                    } else {
                        held.previous = held.active.replace(version.clone());
                        held.last_error = None;
                    }
                }
                if !board.quiet_agents {
                    write_frame(&mut send, &ToCoordinator::Report(report(&held))).await?;
                }
            }
            Some(_) => {}
            None => return Ok(()),
        }
    }
}

/// What a simulated agent runs and last failed, as every report (heartbeats too) tells it:
/// as a real agent does, the last failed install stays in its reports until a later one
/// succeeds, so a heartbeat does not hide the failure from the gates.
#[derive(Default)]
struct Held {
    active: Option<Version>,
    previous: Option<Version>,
    last_error: Option<InstallError>,
}

/// Aborts its task when dropped (an agent's push reader, with the agent).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
