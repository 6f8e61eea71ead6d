//! Variants and compatibility on real agents: a release with a CPU and a GPU build, each
//! device getting its own; a CPU-only release a GPU device refuses as incompatible hardware
//! unless the release allows the CPU fallback; builds that require hardware (`cuda >= 12.2`)
//! chosen by what agents detect in fixture `/proc` trees with a fake `nvidia-smi`; and a
//! rollback to a model whose schemas no longer fit the devices' applications, refused unless
//! forced.

use std::time::Duration;

use anyhow::{Result, ensure};
use ferry_coordinator::api::DeviceView;
use ferry_shared::wire::ErrorKind;
use ferry_tests::{AgentSpec, Fleet, MODEL, model_bytes, wait_until};

const WAIT: Duration = Duration::from_secs(60);

/// Publishes `version` with one build per `(ACCEL, bytes)`, plus `extra` flags.
fn publish_variants(
    fleet: &Fleet,
    version: &str,
    builds: &[(&str, &[u8])],
    extra: &[&str],
) -> Result<String> {
    let mut args = vec![
        "publish".to_owned(),
        MODEL.into(),
        version.into(),
        "--key".into(),
        fleet.key.to_string_lossy().into_owned(),
        "--file-name".into(),
        "model.bin".into(),
    ];
    for (i, (accel, bytes)) in builds.iter().enumerate() {
        let file = fleet.dir.join(format!("{version}-{i}.bin"));
        std::fs::write(&file, bytes)?;
        args.extend(["--variant".into(), format!("{accel}={}", file.display())]);
    }
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fleet.coordinator.ctl(&args)
}

#[test]
fn each_device_gets_its_build_and_a_gpu_falls_back_to_cpu_only_when_allowed() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    fleet.add_agent(AgentSpec::named("cpu-box"))?;
    fleet.add_agent(AgentSpec {
        accelerator: "gpu".into(),
        ..AgentSpec::named("gpu-box")
    })?;
    let (cpu_build, gpu_build) = (
        model_bytes(1, 64 * 1024, true),
        model_bytes(2, 64 * 1024, true),
    );
    let out = publish_variants(
        &fleet,
        "1.0.0",
        &[("cpu", &cpu_build), ("gpu", &gpu_build)],
        &[],
    )?;
    ensure!(out.contains("any/cpu") && out.contains("any/gpu"), "{out}");
    fleet.set_prod("1.0.0", "two builds")?;
    fleet.wait_all_on("1.0.0", WAIT)?;
    ensure!(fleet.agents[0].current_bytes("model.bin")? == cpu_build);
    ensure!(fleet.agents[1].current_bytes("model.bin")? == gpu_build);

    // A CPU-only release: the GPU device refuses it as incompatible hardware, stays put.
    let cpu_only = model_bytes(3, 64 * 1024, true);
    publish_variants(&fleet, "2.0.0", &[("cpu", &cpu_only)], &[])?;
    fleet.set_prod("2.0.0", "cpu only")?;
    let gpu = &fleet.agents[1];
    wait_until("the GPU device to refuse 2.0.0", WAIT, || {
        Ok(gpu.status()?.models[0]
            .last_error
            .as_ref()
            .is_some_and(|e| e.version.to_string() == "2.0.0"))
    })?;
    let error = gpu.status()?.models[0].last_error.clone();
    ensure!(
        error.as_ref().is_some_and(
            |e| e.kind == ErrorKind::IncompatibleHardware && e.message.contains("any/cpu")
        ),
        "{error:?}"
    );
    ensure!(gpu.current().map(|v| v.to_string()).as_deref() == Some("1.0.0"));
    // The agent's own status shows the refusal before its report reaches the coordinator.
    wait_until("the fragmentation report to name the refusal", WAIT, || {
        let report = fleet.coordinator.ctl(&["fleet", "fragmentation"])?;
        Ok(report.contains("incompatible-hardware"))
    })?;

    // The same build, the release allowing the fallback: the GPU device runs the CPU build.
    publish_variants(&fleet, "2.0.1", &[("cpu", &cpu_only)], &["--cpu-fallback"])?;
    fleet.set_prod("2.0.1", "cpu fallback allowed")?;
    fleet.wait_all_on("2.0.1", WAIT)?;
    ensure!(gpu.current_bytes("model.bin")? == cpu_only);
    Ok(())
}

/// A fixture system root: an NVIDIA driver whose `nvidia-smi` reports `cuda` and `compute`
/// (none when `cuda` is empty), and a CPU with `flags`.
fn hardware_root(
    fleet: &Fleet,
    name: &str,
    cuda: &str,
    compute: &str,
    flags: &str,
) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let root = fleet.dir.join(format!("hw-{name}"));
    let write = |rel: &str, text: &str| -> Result<()> {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap_or(&root))?;
        std::fs::write(path, text)?;
        Ok(())
    };
    write(
        "proc/cpuinfo",
        &format!("processor\t: 0\nflags\t\t: fpu sse {flags}\n"),
    )?;
    write("proc/meminfo", "MemTotal:       16315412 kB\n")?;
    if !cuda.is_empty() {
        write(
            "proc/driver/nvidia/version",
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n",
        )?;
        write(
            "proc/driver/nvidia/gpus/0000:01:00.0/information",
            "Model: test\n",
        )?;
        write(
            "usr/bin/nvidia-smi",
            &format!(
                "#!/bin/sh\ncase \"$1\" in\n--query-gpu=compute_cap) echo {compute} ;;\n*) echo '| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: {cuda}  |' ;;\nesac\n"
            ),
        )?;
        std::fs::set_permissions(
            root.join("usr/bin/nvidia-smi"),
            std::fs::Permissions::from_mode(0o755),
        )?;
    }
    Ok(format!("hardware_root = \"{}\"", root.display()))
}

#[test]
fn builds_that_require_hardware_go_where_the_detected_hardware_meets_them() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    // No accelerator in the configs: detection decides (a GPU found means `gpu`).
    for (name, cuda, compute, flags) in [
        ("ada", "12.4", "8.9", "avx2"),
        ("turing-old-driver", "11.8", "7.5", "avx2"),
        ("cpu-avx2", "", "", "avx avx2"),
        ("cpu-old", "", "", "avx"),
    ] {
        let top = hardware_root(&fleet, name, cuda, compute, flags)?;
        fleet.add_agent(AgentSpec {
            accelerator: String::new(),
            top,
            ..AgentSpec::named(name)
        })?;
    }
    let mut ada_labels = Default::default();
    wait_until("ada to say what it is", WAIT, || {
        let devices: Vec<DeviceView> = fleet.coordinator.ctl_json(&["devices", "list"])?;
        Ok(
            match devices
                .into_iter()
                .find(|d| d.labels.get("name").map(String::as_str) == Some("ada"))
            {
                Some(d) => {
                    ada_labels = d.labels;
                    true
                }
                None => false,
            },
        )
    })?;
    for (fact, value) in [
        ("cuda", "12.4"),
        ("compute_capability", "8.9"),
        ("accelerator", "gpu"),
    ] {
        ensure!(
            ada_labels.get(fact).map(String::as_str) == Some(value),
            "{fact} not announced as {value}: {ada_labels:?}"
        );
    }
    let (cuda12, avx2, any_cpu) = (
        model_bytes(1, 64 * 1024, true),
        model_bytes(2, 64 * 1024, true),
        model_bytes(3, 64 * 1024, true),
    );
    let out = publish_variants(
        &fleet,
        "1.0.0",
        &[
            ("gpu[cuda >= 12.2, compute_capability >= 8.0]", &cuda12),
            ("cpu[cpu.avx2]", &avx2),
        ],
        &["--cpu-fallback"],
    )?;
    ensure!(out.contains("any/gpu"), "{out}");
    let shown = fleet
        .coordinator
        .ctl(&["releases", "show", MODEL, "1.0.0"])?;
    ensure!(
        shown.contains("requires cuda >= 12.2, compute_capability >= 8.0")
            && shown.contains("requires cpu.avx2"),
        "{shown}"
    );
    fleet.set_prod("1.0.0", "hardware-specific builds")?;
    let [ada, old_driver, avx2_box, old_cpu] = [0, 1, 2, 3].map(|i| &fleet.agents[i]);
    for (agent, bytes) in [(ada, &cuda12), (old_driver, &avx2), (avx2_box, &avx2)] {
        wait_until("each capable device to run its build", WAIT, || {
            Ok(agent.current().map(|v| v.to_string()).as_deref() == Some("1.0.0"))
        })?;
        ensure!(
            agent.current_bytes("model.bin")? == *bytes,
            "{} got the wrong build",
            agent.name
        );
    }
    // The CPU without AVX2 meets nothing: it refuses, saying what it lacks, and stays put.
    wait_until("the old CPU to refuse 1.0.0", WAIT, || {
        Ok(old_cpu.status()?.models[0].last_error.is_some())
    })?;
    let error = old_cpu.status()?.models[0].last_error.clone();
    ensure!(
        error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::IncompatibleHardware
                && e.message
                    .contains("needs cpu.avx2, the device reports no cpu.avx2")),
        "{error:?}"
    );
    ensure!(old_cpu.current().is_none());
    wait_until("fragmentation to say incompatible hardware", WAIT, || {
        Ok(fleet
            .coordinator
            .ctl(&["fleet", "fragmentation"])?
            .contains("incompatible-hardware"))
    })?;
    // A plain build for any CPU reaches it; the capable ones keep their specific builds.
    publish_variants(
        &fleet,
        "1.1.0",
        &[
            ("gpu[cuda >= 12.2, compute_capability >= 8.0]", &cuda12),
            ("cpu[cpu.avx2]", &avx2),
            ("cpu", &any_cpu),
        ],
        &["--cpu-fallback"],
    )?;
    fleet.set_prod("1.1.0", "a build for every CPU")?;
    fleet.wait_all_on("1.1.0", WAIT)?;
    ensure!(old_cpu.current_bytes("model.bin")? == any_cpu);
    ensure!(ada.current_bytes("model.bin")? == cuda12);
    ensure!(old_driver.current_bytes("model.bin")? == avx2);
    Ok(())
}

const APP: &str = "[application]\nsends = \"tx-features/v3\"\nreads = \"fraud-score/v1..v2\"\n";

fn schemas(input: &str, accepts: &str, output: &str) -> String {
    format!(
        "input_schema = \"{input}\"\naccepts_input = \"{accepts}\"\noutput_schema = \"{output}\"\n"
    )
}

#[test]
fn a_rollback_past_a_schema_change_is_refused_unless_forced() -> Result<()> {
    let mut fleet = Fleet::start(0, None)?;
    for name in ["a", "b"] {
        fleet.add_agent(AgentSpec {
            extra: APP.into(),
            ..AgentSpec::named(name)
        })?;
    }
    let c = &fleet.coordinator;
    // 1.0.0 predates the applications' move to tx-features/v3; 2.0.0 takes v2 and v3.
    fleet.publish_with_meta(
        "1.0.0",
        &model_bytes(1, 64 * 1024, true),
        Some(&schemas(
            "tx-features/v2",
            "tx-features/v2",
            "fraud-score/v1",
        )),
    )?;
    fleet.publish_with_meta(
        "2.0.0",
        &model_bytes(2, 64 * 1024, true),
        Some(&schemas(
            "tx-features/v3",
            "tx-features/v2..v3",
            "fraud-score/v2",
        )),
    )?;
    fleet.set_prod("2.0.0", "fits")?;
    fleet.wait_all_on("2.0.0", WAIT)?;

    for attempt in [
        vec!["alias", "set", MODEL, "prod", "1.0.0"],
        vec!["rollout", "create", MODEL, "1.0.0", "--waves", "100"],
    ] {
        let (err, _) = c.ctl_failing(&attempt)?;
        ensure!(
            err.contains("2 device(s) following detector@prod do not fit 1.0.0")
                && err.contains("sends tx-features/v3; 1.0.0 accepts tx-features/v2")
                && err.contains("coordinated rollback"),
            "{err}"
        );
    }
    c.ctl(&[
        "alias",
        "set",
        MODEL,
        "prod",
        "1.0.0",
        "--force",
        "--reason",
        "the app is rolling back too",
    ])?;
    fleet.wait_all_on("1.0.0", WAIT)?;
    let audit = c.get("/api/v1/audit?limit=1000", "admin")?.body;
    ensure!(
        audit.contains("the app is rolling back too (forced past schema checks"),
        "{audit}"
    );
    Ok(())
}
