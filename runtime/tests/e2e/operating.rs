//! What operators run beside the agent: the alert rules
//! (`deploy/prometheus/`), checked by `promtool`; the Grafana dashboard
//! (`deploy/grafana/`); the PodMonitor (`deploy/kubernetes/monitoring/`).
//! Every metric and grouping label they use must be on a running agent's
//! `/metrics`: a renamed metric breaks this test, not a dashboard.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use crate::common::*;
use crate::kubernetes::{api_get, free_port};

/// Every PromQL expression of the rules and the dashboard, with where it is.
fn expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rules: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(workspace().join("deploy/prometheus/gleaner-rules.yaml")).unwrap(),
    )
    .unwrap();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            out.push((
                format!("rule {name}"),
                rule["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("deploy/grafana/gleaner-dashboard.json"))
            .unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("panel {}", panel["title"]),
                target["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            out.push((
                format!("variable {}", var["name"]),
                var["query"].as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

/// The `gleaner_*` names in `expr`, and the labels it groups by.
fn names_and_labels(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let names = expr
        .split(|c: char| !word(c))
        .filter(|w| w.starts_with("gleaner_"))
        .map(str::to_owned)
        .collect();
    let mut labels = BTreeSet::new();
    for part in expr.split("by (").skip(1) {
        let inside = &part[..part.find(')').unwrap()];
        labels.extend(inside.split(',').map(|l| l.trim().to_owned()));
    }
    // Added by Prometheus when it scrapes, not by the agent.
    labels.remove("instance");
    (names, labels)
}

#[test]
fn alert_rules_pass_promtool() {
    let promtool = which("promtool");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(workspace().join("deploy/prometheus/gleaner-rules.yaml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SUCCESS: 13 rules found"), "{text}");
}

fn which(tool: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{tool} not found: run scripts/setup.sh --sdks (Debian's prometheus package)")
        })
}

#[test]
fn every_metric_the_dashboard_and_rules_use_is_exported() {
    let env = Env::new();
    env.write("in.log", "{\"a\": 1}\nplain\n");
    let port = free_port();
    let config = env.files_pipeline(
        &format!("api: {{ address: \"127.0.0.1:{port}\" }}\nprogress_interval: 100ms"),
        &format!("\"{}\"", env.path("in.log").display()),
        ", start_at: beginning",
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace(
        "    flushers:",
        "    processors: [{ plugin: builtin:parse-json }]\n    flushers:",
    );
    std::fs::write(&config, text).unwrap();
    let mut agent = Reaper(Some(start(&env, &config)));
    wait_until("the API answers", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    // Series per metric name, each a label set.
    let mut exported: BTreeMap<String, Vec<BTreeSet<String>>> = BTreeMap::new();
    wait_until("backlog metrics sampled", || {
        let (_, body) = api_get(port, "/metrics");
        exported.clear();
        for line in body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let series = line.rsplit_once(' ').unwrap().0;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (
                    n,
                    rest.trim_end_matches('}')
                        .split(',')
                        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_owned()))
                        .collect(),
                ),
                None => (series, BTreeSet::new()),
            };
            exported.entry(name.to_owned()).or_default().push(labels);
        }
        exported.contains_key("gleaner_input_backlog_bytes")
    });
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
    let mut used = 0;
    for (place, expr) in expressions() {
        let (names, labels) = names_and_labels(&expr);
        assert!(!names.is_empty(), "{place}: no gleaner metric in `{expr}`");
        for name in &names {
            let Some(series) = exported.get(name) else {
                panic!("{place}: `{name}` is not on /metrics");
            };
            for label in &labels {
                assert!(
                    series.iter().any(|s| s.contains(label)),
                    "{place}: `{name}` has no label `{label}`"
                );
            }
            used += 1;
        }
    }
    assert!(used >= 30, "{used} metric uses checked");
}

#[test]
fn the_pod_monitor_scrapes_the_daemon_sets_api_port() {
    let read = |rel: &str| -> Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(workspace().join(rel)).unwrap()).unwrap()
    };
    let monitor = read("deploy/kubernetes/monitoring/podmonitor.yaml");
    let ds = read("deploy/kubernetes/40-daemonset.yaml");
    assert_eq!(monitor["kind"], "PodMonitor");
    assert_eq!(
        monitor["metadata"]["namespace"],
        ds["metadata"]["namespace"]
    );
    let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&pod_labels[k], v, "the DaemonSet's pods carry {k}={v}");
    }
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    let ports = &ds["spec"]["template"]["spec"]["containers"][0]["ports"];
    assert!(
        ports
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == endpoint["port"]),
        "{ports}"
    );
}

/// `gleaner top` in a terminal (a pty from util-linux's `script`): the
/// live view draws both tables with the pipeline and its plugin, and `q`
/// quits it with the terminal given back.
fn live_view_in_a_terminal(port: u16) {
    use std::io::{Read, Write};
    // A pty made by `script` has no size until it is given one.
    let command = format!(
        "stty cols 160 rows 40; {} top --interval 200ms --api 127.0.0.1:{port}",
        env!("CARGO_BIN_EXE_gleaner")
    );
    let mut child = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let screen = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    let shown = |text: &str| String::from_utf8_lossy(&screen.lock().unwrap()).contains(text);
    wait_until("the live view draws both tables", || {
        // Blank cells are not written: words, not the spaces around them.
        shown("Pipelines") && shown("Plugins") && shown("builtin:file") && shown("rates over")
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"q").unwrap();
    stdin.flush().unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    assert!(status.success(), "q quits");
    // The alternate screen is left on the way out.
    assert!(shown("\x1b[?1049l"), "the terminal is restored");
}

/// `gleaner top --once` on a running agent: the pipeline's totals exactly,
/// its rates while lines are written, and each plugin's row.
#[test]
fn top_once_shows_a_running_pipelines_rates_and_plugins() {
    let env = Env::new();
    let lines: String = (0..1000).map(|i| format!("{{\"n\": {i}}}\n")).collect();
    env.write("in.log", &lines);
    let port = free_port();
    let config = env.files_pipeline(
        &format!("api: {{ address: \"127.0.0.1:{port}\" }}"),
        &format!("\"{}\"", env.path("in.log").display()),
        ", start_at: beginning",
    );
    let mut agent = Reaper(Some(start(&env, &config)));
    let out = env.path("out/events.ndjson");
    wait_until("1000 lines delivered", || lines_in(&out).len() == 1000);
    let top = |interval: &str| {
        let o = gleaner()
            .args(["top", "--once", "--api", &format!("127.0.0.1:{port}")])
            .args(["--interval", interval])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let row = |table: &str, first: &str| -> Vec<String> {
        table
            .lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|r| r.first().map(String::as_str) == Some(first))
            .unwrap_or_else(|| panic!("no row {first}: {table}"))
    };
    // Idle: no rate, every total exact.
    let idle = top("200ms");
    let files = row(&idle, "files");
    // in/s, out/s, read B/s, in, out, queue, backlog, lag, dead, dropped
    assert_eq!(
        files[1..],
        ["0", "0", "0", "1.0k", "1.0k", "0", "0", "0", "0", "0"],
        "{idle}"
    );
    assert!(idle.starts_with("gleaner top: 1 pipelines"), "{idle}");
    let plugin = idle
        .lines()
        .find(|l| l.contains("builtin:file"))
        .unwrap_or_else(|| panic!("{idle}"));
    assert!(plugin.starts_with("files"), "{plugin}");
    assert!(plugin.contains("flusher0"), "{plugin}");
    // Lines written while it samples: rates above zero.
    let writer = {
        let path = env.path("in.log");
        std::thread::spawn(move || {
            for i in 0..20 {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                let chunk: String = (0..100)
                    .map(|j| format!("{{\"n\": {}}}\n", 1000 + i * 100 + j))
                    .collect();
                std::io::Write::write_all(&mut f, chunk.as_bytes()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };
    let busy = top("1s");
    writer.join().unwrap();
    let files = row(&busy, "files");
    let rate = |s: &str| -> f64 {
        match s.strip_suffix('k') {
            Some(k) => k.parse::<f64>().unwrap() * 1000.0,
            None => s.parse().unwrap(),
        }
    };
    assert!(rate(&files[1]) > 0.0 && rate(&files[1]) <= 3000.0, "{busy}");
    assert!(rate(&files[3]) > 0.0, "read bytes/s: {busy}");
    wait_until("3000 lines delivered", || lines_in(&out).len() == 3000);
    live_view_in_a_terminal(port);
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
    // Without an agent: a clear error naming the address.
    let o = gleaner()
        .args(["top", "--once", "--api", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "cannot reach the agent's API at http://127.0.0.1:{port}/metrics"
        )),
        "{err}"
    );
}
