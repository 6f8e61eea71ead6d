//! The model server reload hook on a real agent: a small HTTP model server written here (it
//! "loads" the file the request names and refuses a broken one, as Triton's repository API
//! answers) is told to load each version the device switches to; a version it refuses fails
//! the health check, the device rolls back and the server is told to load the previous one;
//! a local `ferry-agent rollback` tells it too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ferry_shared::wire::ErrorKind;
use ferry_tests::{AgentSpec, Fleet, MODEL, model_bytes, wait_until};

const WAIT: Duration = Duration::from_secs(90);

/// What the stand-in server was asked to load, and what it answered.
type Loads = Arc<Mutex<Vec<(String, u16)>>>;

/// A model server with Triton's `POST /v2/repository/models/NAME/load`: the body names the
/// file to load (`{"parameters": {"file": PATH}}`, written by the hook), the `X-Version`
/// header the version; a file holding `BROKEN` fails to load (HTTP 400).
fn model_server() -> Result<(String, Loads)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let loads: Loads = Arc::default();
    let seen = loads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream, &seen);
        }
    });
    Ok((format!("http://{addr}"), loads))
}

fn answer(stream: TcpStream, loads: &Loads) -> Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let (mut length, mut version) = (0usize, String::new());
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse()?,
                "x-version" => version = value.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let body: serde_json::Value = serde_json::from_slice(&body)?;
    let file = body["parameters"]["file"].as_str().context("no file")?;
    let expected = format!("POST /v2/repository/models/{MODEL}/load ");
    let (status, text) = if !request_line.starts_with(&expected) {
        (404, "unknown route".to_owned())
    } else {
        match std::fs::read(file) {
            Ok(bytes) if bytes.windows(6).any(|w| w == b"BROKEN") => {
                (400, format!("failed to load '{MODEL}': corrupt weights"))
            }
            Ok(_) => (200, String::new()),
            Err(e) => (400, format!("cannot open {file}: {e}")),
        }
    };
    loads
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .push((version, status));
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    Ok(())
}

fn loads(l: &Loads) -> Vec<(String, u16)> {
    l.lock().map(|l| l.clone()).unwrap_or_default()
}

#[test]
fn the_model_server_is_told_on_each_switch_and_rollback_and_a_refusal_rolls_back() -> Result<()> {
    let (server, seen) = model_server()?;
    let mut fleet = Fleet::start(0, None)?;
    fleet.add_agent(AgentSpec {
        extra: format!(
            "[reload]\nurl = \"{server}/v2/repository/models/{{model}}/load\"\n\
             headers = {{ \"X-Version\" = \"{{version}}\" }}\n\
             body = '{{\"parameters\": {{\"file\": \"{{file}}\"}}}}'\ntimeout_secs = 10\n"
        ),
        ..AgentSpec::named("served")
    })?;
    let agent = &fleet.agents[0];
    for (version, seed) in [("1.0.0", 1), ("2.0.0", 2)] {
        fleet.ship(version, &model_bytes(seed, 64 * 1024, true), WAIT)?;
    }
    let ok = |v: &str| (v.to_owned(), 200u16);
    ensure!(
        loads(&seen) == [ok("1.0.0"), ok("2.0.0")],
        "{:?}",
        loads(&seen)
    );

    // 3.0.0 passes the health check's own test but the server will not load it.
    let mut broken = model_bytes(3, 64 * 1024, true);
    broken.extend_from_slice(b"BROKEN");
    fleet.publish("3.0.0", &broken)?;
    fleet.set_prod("3.0.0", "the server will refuse it")?;
    wait_until("the device to give up 3.0.0", WAIT, || {
        Ok(agent.status()?.models[0]
            .last_error
            .as_ref()
            .is_some_and(|e| e.version.to_string() == "3.0.0"))
    })
    .with_context(|| agent.log())?;
    let status = agent.status()?;
    let error = status.models[0].last_error.clone().context("no error")?;
    ensure!(error.kind == ErrorKind::HealthCheck, "{error:?}");
    ensure!(
        error.message.contains("did not load detector 3.0.0")
            && error.message.contains("corrupt weights"),
        "{error:?}"
    );
    ensure!(
        status.models[0]
            .current
            .as_ref()
            .map(ToString::to_string)
            .as_deref()
            == Some("2.0.0")
    );
    wait_until("the server to be told to load 2.0.0 again", WAIT, || {
        Ok(loads(&seen).len() == 4)
    })?;
    ensure!(
        loads(&seen) == [ok("1.0.0"), ok("2.0.0"), ("3.0.0".into(), 400), ok("2.0.0")],
        "{:?}",
        loads(&seen)
    );

    // An operator's local rollback tells the server as well.
    let said = agent.rollback()?;
    ensure!(said.contains("the model server loaded 1.0.0"), "{said}");
    ensure!(
        loads(&seen).last() == Some(&ok("1.0.0")),
        "{:?}",
        loads(&seen)
    );
    // Killed while 4.0.0's health check runs (the server loaded it): the restarted agent rolls
    // the unconfirmed switch back and tells the server to load 1.0.0 again.
    let reached = fleet.block_health(0, true)?;
    fleet.publish("4.0.0", &model_bytes(4, 64 * 1024, true))?;
    fleet.set_prod("4.0.0", "killed mid-check")?;
    wait_until("4.0.0's health check to start", WAIT, || {
        Ok(reached.exists())
    })?;
    ensure!(
        loads(&seen).last() == Some(&ok("4.0.0")),
        "{:?}",
        loads(&seen)
    );
    let before = loads(&seen).len();
    fleet.agents[0].kill();
    fleet.block_health(0, false)?;
    fleet.agents[0].start()?;
    wait_until(
        "the server to be told 1.0.0 after the restart",
        WAIT,
        || Ok(loads(&seen).get(before) == Some(&ok("1.0.0"))),
    )
    .with_context(|| format!("{:?}\n{}", loads(&seen), fleet.agents[0].log()))?;
    Ok(())
}
