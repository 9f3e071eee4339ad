//! Kafka with TLS and SASL: the flusher (TLS made by the host through
//! `gleaner:tls`) and the input (rustls) against a tansu broker that
//! requires SCRAM (`--authentication`) behind an SSL listener, read back
//! by kafka-python over `SASL_SSL`. tansu 0.6.0 takes `--cert`/`--key` but
//! never serves TLS (its broker builds the acceptor and drops it), so the
//! SSL listener is socat (OpenSSL) in front of the broker, which
//! advertises the front's address: every client connection, bootstrap
//! and leader alike, is TLS. The broker keeps its log and users in SQLite
//! (its memory and S3 stores keep no SCRAM users), so users added before
//! `--authentication` outlive the restart with it.

use std::collections::HashMap;

use serde_json::json;

use super::*;

/// socat terminating TLS on `port` with `cert`/`key`, forwarding each
/// connection to `127.0.0.1:to`.
struct TlsFront(Child);

impl TlsFront {
    fn start(port: u16, to: u16, cert: &Path, key: &Path) -> TlsFront {
        let child = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,cert={},key={},verify=0",
                cert.display(),
                key.display()
            ))
            .arg(format!("TCP:127.0.0.1:{to}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start socat ({e}): run `bash scripts/setup.sh`"));
        wait_until("socat listening", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        TlsFront(child)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Adds a SCRAM user to the broker with tansu's own CLI
/// (AlterUserScramCredentials), which tansu 0.6.0 takes only on a
/// connection that did not authenticate: before `--authentication`.
fn add_user(broker: &Broker, name: &str, password: &str, mechanism: &str) {
    let out = Command::new(tool("bin/tansu"))
        .args(["user", "create", "--broker"])
        .arg(format!("tcp://127.0.0.1:{}", broker.port))
        .args(["--mechanism", mechanism, name, password])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tansu user create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first series of `metric` whose labels include `pipeline`.
fn series(port: u16, metric: &str, pipeline: &str) -> f64 {
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        return 0.0;
    }
    let (_, m) = crate::kubernetes::api_get(port, "/metrics");
    let prefix = format!("gleaner_{metric}{{pipeline=\"{pipeline}\"");
    m.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// One agent, five pipelines, each to the broker's SSL listener, each
/// writing the same 3000 lines:
/// - `secure`: TLS with the test CA and SCRAM-SHA-512: every line once;
/// - `plain`: SASL `PLAIN`, which tansu 0.6.0 does not offer (its SASL
///   library is built without it, and it closes the connection instead
///   of answering UNSUPPORTED_SASL_MECHANISM, to kafka-python too):
///   retried, nothing delivered, the log says so;
/// - `bad-password`: the right CA, a wrong password: retried, nothing
///   delivered, the log says authentication failed;
/// - `untrusted`: no CA (the system's roots only): retried, nothing
///   delivered, the log names the unknown issuer;
/// - `ungranted`: grants another port: denied before connecting, counted.
///
/// Then an aggregator reads the topic back over TLS with SCRAM-SHA-256
/// (its own user) into a file, and kafka-python reads it over `SASL_SSL`.
#[test]
fn tls_and_scram_carry_every_line_and_refusals_are_retried_not_lost() {
    let env = Env::new();
    let ca = crate::tls::ca("gleaner kafka test CA");
    let (cert, key) = crate::tls::leaf(&ca);
    let ca_file = env.write("tls/ca.pem", &ca.pem);
    let cert_file = env.write("tls/broker.pem", &cert);
    let key_file = env.write("tls/broker.key", &key);
    let front_port = free_port();
    let front = format!("localhost:{front_port}");
    let mut broker = Broker::start_with(
        Storage::Sqlite(env.path("tansu.db")),
        env.dir.path(),
        false,
        Some(front.clone()),
    );
    add_user(&broker, "agent", "agent-secret", "scram512");
    add_user(&broker, "aggregator", "aggregator-secret", "scram256");
    broker.require_authentication();
    let _tls = TlsFront::start(front_port, broker.port, &cert_file, &key_file);
    let security = json!({
        "security_protocol": "SASL_SSL",
        "ssl_cafile": ca_file,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "agent",
        "sasl_plain_password": "agent-secret",
    });
    client_with(&security, &["create", &front, "secure", "2"]);

    let n = 3000;
    let text: String = (0..n).map(|i| format!("{{\"seq\":{i}}}\n")).collect();
    for name in ["secure", "plain", "bad-password", "untrusted", "ungranted"] {
        env.write(&format!("logs/{name}.log"), &text);
    }
    let port = free_port();
    let pipeline = |name: &str, tls: &str, mechanism: &str, password: &str, granted: &str| {
        format!(
            r#"
  - name: {name}
    inputs: [{{ type: file, paths: ["{logs}/{name}.log"], start_at: beginning }}]
    flushers:
      - plugin: builtin:kafka
        grants: {{ hosts: ["{granted}"] }}
        {tls}
        config:
          brokers: ["{front}"]
          topic: secure
          encoding: raw
          tls: true
          sasl: {{ mechanism: {mechanism}, username: agent, password: "{password}" }}
"#,
            logs = env.path("logs").display(),
        )
    };
    let with_ca = format!("tls: {{ ca_file: \"{}\" }}", ca_file.display());
    let config = env.config_with(
        &format!("api: {{ address: \"127.0.0.1:{port}\" }}"),
        &[
            pipeline(
                "secure",
                &with_ca,
                "SCRAM-SHA-512",
                "${KAFKA_PASSWORD}",
                &front,
            ),
            pipeline("plain", &with_ca, "PLAIN", "${KAFKA_PASSWORD}", &front),
            pipeline(
                "bad-password",
                &with_ca,
                "SCRAM-SHA-512",
                "not-the-password",
                &front,
            ),
            pipeline(
                "untrusted",
                "",
                "SCRAM-SHA-512",
                "${KAFKA_PASSWORD}",
                &front,
            ),
            pipeline(
                "ungranted",
                &with_ca,
                "SCRAM-SHA-512",
                "${KAFKA_PASSWORD}",
                "localhost:1",
            ),
        ]
        .concat(),
    );
    let log = env.path("agent.log");
    let mut agent = Reaper(Some(
        gleaner()
            .args(["run", "--config"])
            .arg(&config)
            .env("KAFKA_PASSWORD", "agent-secret")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    ));
    wait_until("every line of `secure` delivered", || {
        series(port, "pipeline_events_delivered_total", "secure") >= n as f64
    });
    for refused in ["plain", "bad-password", "untrusted", "ungranted"] {
        wait_until(&format!("`{refused}` retried"), || {
            series(port, "pipeline_flush_retries_total", refused) >= 1.0
        });
    }
    assert!(series(port, "plugin_destinations_denied_total", "ungranted") >= 1.0);
    for refused in ["plain", "bad-password", "untrusted", "ungranted"] {
        assert_eq!(
            series(port, "pipeline_events_delivered_total", refused),
            0.0,
            "{refused}"
        );
    }
    let (_, _) = agent.sigterm_and_wait();
    let log = env.log();
    assert!(
        log.contains("SASL authentication with") && log.contains("failed"),
        "{log}"
    );
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(
        log.contains("the broker closed the connection when asked for PLAIN"),
        "{log}"
    );
    assert!(log.contains("is not granted to this plugin"), "{log}");
    assert!(
        !log.contains("agent-secret"),
        "the password reached the log"
    );

    // kafka-python, over SASL_SSL, finds each line once.
    let s = client_with(&security, &["summary", &front, "secure", &n.to_string()]);
    assert_eq!(s["count"], n, "{s}");
    assert_eq!(s["distinct"], n, "{s}");

    // The aggregator: kafka input over TLS with SCRAM-SHA-256.
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let aggregator = env.config(&format!(
        r#"
  - name: aggregate
    inputs:
      - type: kafka
        brokers: ["{front}"]
        topics: [secure]
        group: secure-aggregators
        tls: {{ ca_file: "{ca}" }}
        sasl: {{ mechanism: SCRAM-SHA-256, username: aggregator, password: "${{AGGREGATOR_PASSWORD}}" }}
    processors: [{{ plugin: builtin:parse-json }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        ca = ca_file.display(),
        out = out.display()
    ));
    let log = run_with_secret(&aggregator, "AGGREGATOR_PASSWORD", "aggregator-secret");
    let got = lines_in(&out.join("events.ndjson"));
    let mut seen: HashMap<u64, u32> = HashMap::new();
    for e in &got {
        *seen.entry(e["seq"].as_u64().unwrap()).or_default() += 1;
    }
    assert_eq!(got.len(), n, "{log}");
    assert_eq!(seen.len(), n, "every line once");
    let committed = client_with(
        &security,
        &["committed", &front, "secure-aggregators", "secure"],
    );
    let total: u64 = committed
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, n as u64, "{committed}");
}
