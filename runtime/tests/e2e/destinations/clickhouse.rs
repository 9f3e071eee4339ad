//! `builtin:clickhouse` against a real ClickHouse (Debian's
//! `clickhouse-server`, installed by `scripts/setup.sh --sdks`), started
//! here on free ports in a temporary directory, checked with its own
//! client, `clickhouse-client`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::common::*;

/// A ClickHouse server of the test's own.
struct ClickHouse {
    child: Child,
    http: u16,
    tcp: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary(name: &str) -> PathBuf {
    ["/usr/bin", "/usr/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is missing: run `bash scripts/setup.sh --sdks`"))
}

impl ClickHouse {
    fn start() -> ClickHouse {
        let dir = tempfile::tempdir().unwrap();
        let (http, tcp, inter) = (free_port(), free_port(), free_port());
        let p = |sub: &str| format!("{}/{sub}/", dir.path().display());
        let child = Command::new(binary("clickhouse-server"))
            .arg("--config-file=/etc/clickhouse-server/config.xml")
            .arg("--")
            .arg(format!("--path={}", p("data")))
            .arg(format!("--tmp_path={}", p("tmp")))
            .arg(format!("--user_files_path={}", p("user_files")))
            .arg(format!("--format_schema_path={}", p("schemas")))
            .arg(format!("--http_port={http}"))
            .arg(format!("--tcp_port={tcp}"))
            .arg(format!("--interserver_http_port={inter}"))
            .arg(format!("--logger.log={}log", p("")))
            .arg(format!("--logger.errorlog={}err", p("")))
            .arg("--logger.console=0")
            .arg("--listen_host=127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let ch = ClickHouse {
            child,
            http,
            tcp,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while ch.query("SELECT 1").as_deref() != Ok("1") {
            assert!(Instant::now() < deadline, "clickhouse-server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        ch
    }

    /// Runs `sql` with `clickhouse-client`; its output, trimmed.
    fn query(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(binary("clickhouse-client"))
            .args(["--host", "127.0.0.1", "--port", &self.tcp.to_string()])
            .args(["--query", sql])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn clickhouse_inserts_typed_rows_and_dead_letters_the_rows_it_cannot_parse() {
    let ch = ClickHouse::start();
    ch.query(
        "CREATE TABLE default.logs (timestamp DateTime, level String, n Int64, ratio Float64, \
         message String) ENGINE = MergeTree ORDER BY timestamp",
    )
    .unwrap();
    let env = Env::new();
    // Every 40th line has a text `n`: the Int64 column refuses it.
    let lines: String = (0..400)
        .map(|i| {
            let n = if i % 40 == 13 {
                format!("\"bad-{i}\"")
            } else {
                i.to_string()
            };
            format!(
                "{{\"t\":\"2026-11-29T10:{:02}:00Z\",\"level\":\"info\",\"n\":{n},\"ratio\":0.25,\"message\":\"row {i}\"}}\n",
                i % 60
            )
        })
        .collect();
    env.write("in.log", &lines);
    let addr = format!("127.0.0.1:{}", ch.http);
    let config = env.config(&format!(
        r#"
  - name: ch
    batch: {{ max_events: 100, linger: 50ms }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors:
      - plugin: builtin:parse-json
      - plugin: builtin:parse-time
        config: {{ field: t, remove: true }}
    flushers:
      - plugin: builtin:clickhouse
        config:
          url: "http://{addr}"
          table: logs
          user: default
          password: "${{CH_PASSWORD}}"
          timestamp_format: datetime
          compression: gzip
        grants: {{ hosts: ["{addr}"] }}
        on_error: {{ backoff: 20ms }}
"#,
        log = env.path("in.log").display(),
    ));
    run_with_secret(&config, "CH_PASSWORD", "");
    // Every good row once, with its own time and typed columns.
    let want: Vec<i64> = (0..400).filter(|i| i % 40 != 13).collect();
    assert_eq!(
        ch.query("SELECT count(), uniqExact(n), sum(n), min(ratio), max(ratio) FROM logs")
            .unwrap(),
        format!(
            "{}\t{}\t{}\t0.25\t0.25",
            want.len(),
            want.len(),
            want.iter().sum::<i64>()
        )
    );
    assert_eq!(
        ch.query("SELECT toString(timestamp), message FROM logs WHERE n = 61")
            .unwrap(),
        "2026-11-29 10:01:00\trow 61"
    );
    // The unparsable rows are dead-lettered with ClickHouse's reason.
    let dead = lines_in(&env.path("state/dead-letter/ch.ndjson"));
    let bad: Vec<&str> = dead
        .iter()
        .map(|d| d["fields"]["n"].as_str().unwrap())
        .collect();
    let want_bad: Vec<String> = (0..400)
        .filter(|i| i % 40 == 13)
        .map(|i| format!("bad-{i}"))
        .collect();
    assert_eq!(bad, want_bad);
    for d in &dead {
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.contains("Code: 27") && reason.contains("(at row"),
            "{reason}"
        );
    }
}

#[test]
fn clickhouse_unknown_table_is_refused_whole() {
    let ch = ClickHouse::start();
    let env = Env::new();
    env.write("in.log", "one\ntwo\n");
    let addr = format!("127.0.0.1:{}", ch.http);
    let config = env.config(&format!(
        r#"
  - name: ch
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    flushers:
      - plugin: builtin:clickhouse
        config: {{ url: "http://{addr}", table: missing }}
        grants: {{ hosts: ["{addr}"] }}
"#,
        log = env.path("in.log").display(),
    ));
    run_once(&config);
    let dead = lines_in(&env.path("state/dead-letter/ch.ndjson"));
    assert_eq!(dead.len(), 2);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("Code: 60") && reason.contains("missing"),
        "{reason}"
    );
}
