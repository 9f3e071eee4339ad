//! Kafka end to end: `builtin:kafka` producing to a real broker (tansu,
//! a Kafka-compatible broker from crates.io, installed into the tools
//! cache by `scripts/setup.sh --sdks`), read back with an independent
//! client (kafka-python, `client.py`); and the `kafka` input of an
//! aggregator consuming what an agent produced.

mod aggregator;
mod flusher;
mod secure;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

pub use crate::kubernetes::free_port;

/// Where a broker keeps its data.
pub enum Storage {
    /// In memory: lost when the broker stops.
    Memory,
    /// In an S3 store (s3s-fs on a directory): kept across restarts.
    S3(S3Store),
    /// In a SQLite file (libsql): kept across restarts, and the only
    /// store of these that keeps SCRAM users (memory and S3 drop them).
    Sqlite(PathBuf),
}

/// An s3s-fs server on a directory, holding bucket `tansu`.
pub struct S3Store {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl S3Store {
    pub fn start() -> S3Store {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tansu")).unwrap();
        let port = free_port();
        let child = Command::new(tool("bin/s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", "tansu", "--secret-key", "tansu-secret"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("s3s-fs listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        S3Store {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for S3Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tansu broker of the test's own on a free port.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    storage: Storage,
    log: PathBuf,
    /// SASL required (`--authentication`).
    authentication: bool,
    /// The `host:port` the broker tells clients to use, when not its own
    /// (a TLS front).
    advertised: Option<String>,
}

impl Broker {
    pub fn start(storage: Storage, log_dir: &Path) -> Broker {
        Broker::start_with(storage, log_dir, false, None)
    }

    /// A broker that requires SASL when `authentication`, and advertises
    /// `advertised` instead of its own address when given.
    pub fn start_with(
        storage: Storage,
        log_dir: &Path,
        authentication: bool,
        advertised: Option<String>,
    ) -> Broker {
        let mut b = Broker {
            child: None,
            port: free_port(),
            storage,
            log: log_dir.join("tansu.log"),
            authentication,
            advertised,
        };
        b.spawn();
        b
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = self
            .advertised
            .as_ref()
            .map_or_else(|| url.clone(), |a| format!("tcp://{a}"));
        let mut cmd = Command::new(tool("bin/tansu"));
        cmd.arg("broker").args([
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
        ]);
        if self.authentication {
            cmd.arg("--authentication");
        }
        match &self.storage {
            Storage::Memory => {
                cmd.args(["--storage-engine", "memory://tansu/"]);
            }
            Storage::Sqlite(path) => {
                // tansu 0.6.0 reads `sqlite:///abs/x.db` as the relative
                // path `abs/x.db` under its directory; so, relative.
                let name = path.file_name().unwrap().to_string_lossy();
                cmd.current_dir(path.parent().unwrap())
                    .arg("--storage-engine")
                    .arg(format!("sqlite://{name}"));
            }
            Storage::S3(s3) => {
                cmd.args(["--storage-engine", "s3://tansu/"])
                    .env("AWS_ENDPOINT", format!("http://127.0.0.1:{}", s3.port))
                    .env("AWS_ACCESS_KEY_ID", "tansu")
                    .env("AWS_SECRET_ACCESS_KEY", "tansu-secret")
                    .env("AWS_DEFAULT_REGION", "auto")
                    .env("AWS_ALLOW_HTTP", "true");
            }
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            cmd.env("RUST_LOG", "warn")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start tansu ({e}): run `bash scripts/setup.sh --sdks`")
                }),
        );
        let port = self.port;
        wait_until("tansu listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// Stops the broker (SIGTERM, then waits).
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            signal(&child, libc::SIGTERM);
            let mut child = child;
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Restarts the broker requiring SASL. tansu creates users only
    /// through an unauthenticated connection, so a test adds them first,
    /// on storage that survives the restart.
    pub fn require_authentication(&mut self) {
        self.authentication = true;
        self.restart();
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `client.py` (kafka-python) with `args`; its JSON answer.
pub fn client(args: &[&str]) -> Value {
    client_with(&Value::Null, args)
}

/// [`client`] with kafka-python `security` settings (a JSON object:
/// `security_protocol`, `ssl_cafile`, `sasl_mechanism`, ...).
pub fn client_with(security: &Value, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/kafka/client.py");
    let mut cmd = Command::new(tool("py/bin/python"));
    if !security.is_null() {
        cmd.env("KAFKA_CLIENT_SECURITY", security.to_string());
    }
    let out = cmd.arg(script).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "client.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "client.py {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
