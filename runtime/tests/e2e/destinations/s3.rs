//! `builtin:s3` against a real S3 server, `s3s-fs` (the s3s project's
//! file-backed S3, installed into the tools cache by `scripts/setup.sh
//! --sdks`), which checks every request's SigV4 signature. What it stored
//! is read back from its directory, not through Gleaner's code.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::common::*;

struct S3Server {
    child: Child,
}

impl S3Server {
    fn start(root: &Path, port: u16) -> S3Server {
        let child = Command::new(tool("bin/s3s-fs"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                "AKIDGLEANER",
                "--secret-key",
                "gleaner/secret+key",
            ])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        S3Server { child }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn s3_objects_are_signed_partitioned_by_key_and_named_by_content() {
    let env = Env::new();
    let root = env.path("s3");
    std::fs::create_dir_all(root.join("logs-bucket")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let lines: String = (0..1000)
        .map(|i| {
            let app = ["web", "db"][i % 2];
            format!("{{\"app\":\"{app}\",\"n\":{i}}}\n")
        })
        .collect();
    env.write("in.log", &lines);
    let addr = format!("127.0.0.1:{port}");
    let config = env.config(&format!(
        r#"
  - name: s3
    batch: {{ max_events: 300, linger: 50ms }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: [ {{ plugin: builtin:parse-json }} ]
    flushers:
      - plugin: builtin:s3
        config:
          bucket: logs-bucket
          endpoint: "http://{addr}"
          key: "logs/{{app}}/%Y/%m/%d/"
          access_key_id: "${{S3_KEY_ID}}"
          secret_access_key: "${{S3_SECRET}}"
        grants: {{ hosts: ["{addr}"] }}
        on_error: {{ backoff: 50ms }}
"#,
        log = env.path("in.log").display(),
    ));
    // The store is down when the agent starts: uploads are retried.
    let agent = gleaner()
        .args(["run", "--exit-on-eof", "--config"])
        .arg(&config)
        .env("S3_KEY_ID", "AKIDGLEANER")
        .env("S3_SECRET", "gleaner/secret+key")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let _server = S3Server::start(&root, port);
    let out = agent.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let mut stored = Vec::new();
    files(&root.join("logs-bucket"), &mut stored);
    let objects: Vec<&PathBuf> = stored
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(".ndjson.gz"))
        .collect();
    let dead = std::fs::read_to_string(env.path("state/dead-letter/s3.ndjson")).unwrap_or_default();
    assert!(
        objects.len() >= 2,
        "{stored:?}\n{log}\n{}",
        &dead[..dead.len().min(2000)]
    );
    let mut seen = Vec::new();
    for path in objects {
        let raw = std::fs::read(path).unwrap();
        // Named by the first 16 hex digits of the content's SHA-256.
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let hash: String = sha2::Sha256::digest(&raw)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(name, format!("{}.ndjson.gz", &hash[..16]));
        let text = String::from_utf8(crate::http_sink::decode(Some("gzip"), &raw)).unwrap();
        let rel = path.strip_prefix(root.join("logs-bucket")).unwrap();
        for line in text.lines() {
            let doc: serde_json::Value = serde_json::from_str(line).unwrap();
            let app = doc["app"].as_str().unwrap();
            let day = doc["timestamp"].as_str().unwrap()[..10].replace('-', "/");
            assert!(
                rel.starts_with(format!("logs/{app}/{day}")),
                "{} holds {app}",
                rel.display()
            );
            seen.push(doc["n"].as_i64().expect("n stays a number"));
        }
    }
    seen.sort();
    assert_eq!(seen, (0..1000).collect::<Vec<i64>>(), "every line once");
    assert!(!log.contains("gleaner/secret+key"));
}
