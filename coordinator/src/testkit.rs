//! Real servers for tests, started and stopped by the tests themselves, each in a temporary
//! directory: a PostgreSQL cluster (binaries from Debian's `postgresql-15`, installed with the
//! user it runs as by `scripts/install-postgres.sh`) and an S3-compatible store (SeaweedFS,
//! installed by `scripts/install-seaweedfs.sh`). Built for the coordinator's own tests and,
//! behind the `test-util` feature, for the end-to-end tests.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The user the cluster runs as when the tests run as root (initdb refuses root).
const SERVER_USER: &str = "ferry-pg";

/// A PostgreSQL server on loopback, with its data in a temporary directory. It stops, and its
/// directory goes, when the process that started it exits, however it exits: a shell holds it,
/// reading its standard input, which closes then.
pub struct PostgresServer {
    port: u16,
    /// With TLS: the certificate authority (PEM) that signed the server's certificate.
    ca_pem: Option<Vec<u8>>,
    /// The shell that holds the server; stopping it (closing its input) stops the server.
    _holder: Child,
}

impl PostgresServer {
    /// The server this test process shares, started on first use (each test takes a database
    /// of its own: [`PostgresServer::fresh_database`]).
    ///
    /// # Panics
    /// When the server cannot start: the tests that need it cannot run.
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<PostgresServer> = OnceLock::new();
        SHARED.get_or_init(|| match Self::start() {
            Ok(server) => server,
            Err(e) => panic!("cannot start PostgreSQL for the tests: {e}"),
        })
    }

    /// Starts a new cluster.
    pub fn start() -> Result<Self, String> {
        Self::start_with(false)
    }

    /// Starts a new cluster that speaks TLS, with a certificate for `127.0.0.1` and
    /// `localhost` signed by a certificate authority of its own ([`PostgresServer::ca_pem`]).
    pub fn start_with_tls() -> Result<Self, String> {
        Self::start_with(true)
    }

    /// The certificate authority that signed the server's certificate, when it speaks TLS.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    fn start_with(tls: bool) -> Result<Self, String> {
        let bin = binaries()?;
        let user = server_user()?;
        let dir =
            std::env::temp_dir().join(format!("ferry-test-pg-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.display()))?;
        }
        let data = dir.join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "--auth=trust",
                "--username=ferry",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_user(&mut initdb, user);
        let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let (ca_pem, ssl) = if tls {
            let (ca, cert, key) = tls_material().map_err(|e| format!("certificates: {e}"))?;
            for (name, text) in [("server.crt", &cert), ("server.key", &key)] {
                let path = data.join(name);
                std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if let Some((uid, gid)) = user {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                        .map_err(|e| format!("chown {}: {e}", path.display()))?;
                }
            }
            (Some(ca.into_bytes()), "-c ssl=on")
        } else {
            (None, "")
        };
        let port = free_port()?;
        let server_command = format!(
            "'{postgres}' -D '{data}' -p {port} -k '{dir}' -c listen_addresses=127.0.0.1 \
             -c max_connections=200 -c shared_buffers=32MB {ssl}",
            postgres = bin.join("postgres").display(),
            data = data.display(),
            dir = dir.display(),
        );
        // Fast shutdown: open sessions are ended, not waited for.
        let holder = held(&server_command, "-INT", &dir, user)?;
        let server = Self {
            port,
            ca_pem,
            _holder: holder,
        };
        server.wait_ready(&dir)?;
        Ok(server)
    }

    /// The address of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://ferry@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database; its address.
    pub fn fresh_database(&self) -> String {
        let name = format!("t{}_{}", std::process::id(), unique());
        let mut admin = match postgres::Client::connect(&self.url("postgres"), postgres::NoTls) {
            Ok(client) => client,
            Err(e) => panic!("connecting to the test server: {e}"),
        };
        if let Err(e) = admin.batch_execute(&format!("CREATE DATABASE {name}")) {
            panic!("creating database {name}: {e}");
        }
        self.url(&name)
    }

    fn wait_ready(&self, dir: &Path) -> Result<(), String> {
        let start = Instant::now();
        loop {
            match postgres::Client::connect(&self.url("postgres"), postgres::NoTls) {
                Ok(_) => return Ok(()),
                Err(e) if start.elapsed() > Duration::from_secs(30) => {
                    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                    return Err(format!("not ready after 30 s ({e}); its log:\n{log}"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// An S3-compatible server (SeaweedFS's `weed server -s3`) on loopback, with its data in a
/// temporary directory; it stops, and its directory goes, when the process that started it
/// exits (held as [`PostgresServer`] is).
pub struct S3Server {
    port: u16,
    _holder: Child,
}

impl S3Server {
    /// The access key the server admits.
    pub const ACCESS_KEY: &'static str = "ferry-test";
    /// Its secret.
    pub const SECRET_KEY: &'static str = "ferry-test-secret";
    /// The region requests are signed for.
    pub const REGION: &'static str = "us-east-1";

    /// The server this test process shares, started on first use (each test takes a bucket
    /// of its own: [`S3Server::fresh_bucket`]).
    ///
    /// # Panics
    /// When the server cannot start: the tests that need it cannot run.
    pub fn shared() -> &'static S3Server {
        static SHARED: OnceLock<S3Server> = OnceLock::new();
        SHARED.get_or_init(|| match Self::start() {
            Ok(server) => server,
            Err(e) => panic!("cannot start an S3 server for the tests: {e}"),
        })
    }

    /// Starts a new server.
    pub fn start() -> Result<Self, String> {
        let weed = weed()?;
        let dir =
            std::env::temp_dir().join(format!("ferry-test-s3-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = dir.join("s3.json");
        let identities = format!(
            r#"{{"identities":[{{"name":"ferry","credentials":[{{"accessKey":"{}","secretKey":"{}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#,
            Self::ACCESS_KEY,
            Self::SECRET_KEY
        );
        std::fs::write(&config, identities).map_err(|e| format!("{}: {e}", config.display()))?;
        // Held together while chosen, so that no port is handed out twice.
        let listening = (0..10)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("free ports: {e}"))?;
        let ports = listening
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("free ports: {e}"))?;
        drop(listening);
        let flags = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "s3.port.iceberg",
            "s3.port.lance",
        ];
        let ports_flags: Vec<String> = flags
            .iter()
            .zip(&ports)
            .map(|(flag, port)| format!("-{flag}={port}"))
            .collect();
        let server_command = format!(
            "'{weed}' server -dir='{dir}' -ip=127.0.0.1 -ip.bind=127.0.0.1 -filer -s3 \
             -s3.config='{config}' -master.volumeSizeLimitMB=64 -volume.max=0 \
             -volume.preStopSeconds=0 {ports}",
            weed = weed.display(),
            dir = dir.display(),
            config = config.display(),
            ports = ports_flags.join(" "),
        );
        // Killed outright: its graceful stop takes some 20 s, and its data goes anyway.
        let holder = held(&server_command, "-9", &dir, None)?;
        let server = Self {
            port: ports[6],
            _holder: holder,
        };
        let start = Instant::now();
        // Ready once a bucket can be made (the filer behind the gateway is up).
        while let Err(e) = server.create_bucket("ferry-ready") {
            if start.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
                return Err(format!("not ready after 60 s ({e}); its log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(server)
    }

    /// The S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A new, empty bucket; its name.
    pub fn fresh_bucket(&self) -> String {
        let name = format!("t{}-{}", std::process::id(), unique());
        if let Err(e) = self.create_bucket(&name) {
            panic!("creating bucket {name}: {e}");
        }
        name
    }

    /// The lines of a coordinator's `[store]` section that keep its chunks in a new bucket
    /// on this server under `ferry/`, with the credentials written to a file in `dir` (which
    /// must outlive the coordinators that read it). Every node given the same lines shares
    /// the bucket.
    pub fn chunk_settings(&self, dir: &Path) -> Result<String, String> {
        let credentials = dir.join("s3.credentials");
        std::fs::write(
            &credentials,
            format!("{}\n{}\n", Self::ACCESS_KEY, Self::SECRET_KEY),
        )
        .map_err(|e| format!("{}: {e}", credentials.display()))?;
        Ok(format!(
            "chunks = \"s3://{bucket}/ferry/\"\ns3_endpoint = \"{endpoint}\"\n\
             s3_region = \"{region}\"\ns3_credentials_file = \"{credentials}\"\n",
            bucket = self.fresh_bucket(),
            endpoint = self.endpoint(),
            region = Self::REGION,
            credentials = credentials.display(),
        ))
    }

    fn create_bucket(&self, name: &str) -> Result<(), String> {
        use rusty_s3::S3Action;
        let endpoint = self.endpoint().parse().map_err(|e| format!("{e}"))?;
        let bucket = rusty_s3::Bucket::new(
            endpoint,
            rusty_s3::UrlStyle::Path,
            name.to_owned(),
            Self::REGION,
        )
        .map_err(|e| e.to_string())?;
        let credentials = rusty_s3::Credentials::new(Self::ACCESS_KEY, Self::SECRET_KEY);
        let action = bucket.create_bucket(&credentials);
        let url = action.sign(Duration::from_secs(60));
        let answer = ureq::put(url.as_str())
            .send(action.body().as_bytes())
            .map_err(|e| e.to_string())?;
        match answer.status().as_u16() {
            200 => Ok(()),
            status => Err(format!("status {status}")),
        }
    }
}

/// The `weed` program: `FERRY_WEED`, else where `scripts/install-seaweedfs.sh` puts it (as
/// root or not), else on the path.
fn weed() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("FERRY_WEED") {
        return Ok(PathBuf::from(path));
    }
    let mut installed = vec![PathBuf::from("/opt/ferry-tools/bin/weed")];
    if let Some(home) = std::env::var_os("HOME") {
        installed.push(PathBuf::from(home).join(".local/share/ferry-tools/bin/weed"));
    }
    if let Some(found) = installed.into_iter().find(|path| path.exists()) {
        return Ok(found);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("weed"))
        .find(|path| path.exists())
        .ok_or_else(|| "no SeaweedFS `weed` program (run scripts/install-seaweedfs.sh)".into())
}

/// Starts `server` (a shell command line) under a shell that holds it: the shell waits for
/// its own standard input to close (the test process exiting, however it exits), then sends
/// the server `signal`, waits for it and removes `dir`, where the server's log goes. Runs as
/// `user` when given. Returns once the server was started.
fn held(server: &str, signal: &str, dir: &Path, user: Option<(u32, u32)>) -> Result<Child, String> {
    let script = format!(
        "{server} >'{dir}/log' 2>&1 & s=$!; echo started; cat >/dev/null; kill {signal} $s; \
         wait $s; rm -rf '{dir}'",
        dir = dir.display(),
    );
    let mut holder = Command::new("sh");
    holder
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    as_user(&mut holder, user);
    let mut holder = holder.spawn().map_err(|e| format!("sh: {e}"))?;
    if let Some(out) = holder.stdout.take() {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
    }
    Ok(holder)
}

/// A certificate authority, and a server certificate and key it signed for `127.0.0.1` and
/// `localhost`, all PEM.
fn tls_material() -> Result<(String, String, String), rcgen::Error> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}

/// The directory of the newest installed PostgreSQL's programs.
fn binaries() -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e} (run scripts/install-postgres.sh)"))?
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    found.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .ok_or_else(|| "no PostgreSQL server installed (run scripts/install-postgres.sh)".into())
}

/// The uid and gid to run the server as: [`SERVER_USER`]'s when this process is root, else
/// none (it runs as this process's user).
fn server_user() -> Result<Option<(u32, u32)>, String> {
    let me = std::fs::metadata("/proc/self").map_err(|e| format!("/proc/self: {e}"))?;
    if std::os::unix::fs::MetadataExt::uid(&me) != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&SERVER_USER))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .map(Some)
        .ok_or_else(|| {
            format!(
                "running as root needs the user {SERVER_USER} (run scripts/install-postgres.sh)"
            )
        })
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid).current_dir("/");
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("a free port: {e}"))
}

/// A number no other call in this process returns.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s3_server_makes_buckets_for_each_test() {
        let server = S3Server::shared();
        let (a, b) = (server.fresh_bucket(), server.fresh_bucket());
        assert_ne!(a, b);
        assert!(server.endpoint().starts_with("http://127.0.0.1:"));
    }
}
