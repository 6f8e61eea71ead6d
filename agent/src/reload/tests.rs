use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Instant;

use super::*;

fn installed() -> Installed {
    Installed {
        dir: "/state/models/m/current".into(),
        file: "/state/models/m/current/model.tar".into(),
        unpacked: Some("/state/models/m/current/model".into()),
    }
}

fn names() -> (ModelName, Version) {
    ("detector".parse().unwrap(), "2.0.0".parse().unwrap())
}

/// A server answering one request with `answer`; the request's text comes back on the
/// channel.
fn serve(answer: &'static [u8]) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Some(Ok(mut stream)) = listener.incoming().next() {
            let request = read_request(&mut stream);
            let _ = tx.send(request);
            let _ = stream.write_all(answer);
        }
    });
    (format!("http://{addr}"), rx)
}

/// The whole request: headers, then as many body bytes as `content-length` says (they may
/// arrive in several segments, as they do under qemu).
fn read_request(stream: &mut std::net::TcpStream) -> String {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&request).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                return text;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&request).into_owned(),
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
}

fn http_hook(url: String, body: Option<&str>) -> ReloadHook {
    ReloadHook {
        action: ReloadAction::Http(HttpCall {
            method: "POST".into(),
            url,
            headers: [("X-Model".to_owned(), "{model}@{version}".to_owned())].into(),
            body: body.map(str::to_owned),
        }),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn an_http_reload_fills_in_the_version_and_takes_a_2xx_as_done() {
    let (base, seen) = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let hook = http_hook(
        format!("{base}/v2/repository/models/{{model}}/load"),
        Some(r#"{"parameters": {"path": "{unpacked}"}}"#),
    );
    let (model, version) = names();
    hook.run(&model, &version, &installed()).await.unwrap();
    let request = seen.recv().unwrap();
    assert!(
        request.starts_with("POST /v2/repository/models/detector/load HTTP/1.1"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("x-model: detector@2.0.0"),
        "{request}"
    );
    assert!(
        request.contains(r#"{"parameters": {"path": "/state/models/m/current/model"}}"#),
        "{request}"
    );
}

#[tokio::test]
async fn a_refused_http_reload_says_what_the_server_answered() {
    let (base, _seen) = serve(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 33\r\n\r\nfailed to load 'detector': bad op",
    );
    let (model, version) = names();
    let err = http_hook(format!("{base}/load"), None)
        .run(&model, &version, &installed())
        .await
        .unwrap_err();
    assert!(err.contains("did not load detector 2.0.0"), "{err}");
    assert!(
        err.contains("HTTP 400: failed to load 'detector': bad op"),
        "{err}"
    );
}

#[tokio::test]
async fn an_http_reload_that_never_answers_fails_within_its_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let mut hook = http_hook(format!("http://{addr}/load"), None);
    hook.timeout = Duration::from_millis(500);
    let (model, version) = names();
    let started = Instant::now();
    let err = hook.run(&model, &version, &installed()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(4), "{err}");
    assert!(err.contains("did not load"), "{err}");
    drop(held);
}

#[tokio::test]
async fn a_command_reload_gets_its_arguments_filled_in_and_its_failure_told() {
    let hook = ReloadHook {
        action: ReloadAction::Command(vec![
            "sh".into(),
            "-c".into(),
            r#"test "$1" = "detector 2.0.0 /state/models/m/current/model" && test "$FERRY_VERSION" = 2.0.0"#.into(),
            "reload".into(),
            "{model} {version} {unpacked}".into(),
        ]),
        timeout: Duration::from_secs(5),
    };
    let (model, version) = names();
    hook.run(&model, &version, &installed()).await.unwrap();
    let failing = ReloadHook {
        action: ReloadAction::Command(vec![
            "sh".into(),
            "-c".into(),
            "echo 'no such model' >&2; exit 2".into(),
        ]),
        timeout: Duration::from_secs(5),
    };
    let err = failing
        .run(&model, &version, &installed())
        .await
        .unwrap_err();
    assert!(
        err.contains("no such model") && err.contains("status 2"),
        "{err}"
    );
}

#[test]
fn without_an_unpacked_tree_the_placeholder_is_the_file() {
    let (model, version) = names();
    let mut at = installed();
    at.unpacked = None;
    assert_eq!(
        fill("{unpacked}|{dir}|{file}", &model, &version, &at),
        "/state/models/m/current/model.tar|/state/models/m/current|/state/models/m/current/model.tar"
    );
}
