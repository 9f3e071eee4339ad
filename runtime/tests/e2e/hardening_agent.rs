//! Issue 14, the agent under faults: a looping processor at shutdown, a
//! plugin that floods its stderr, idle API connections, configs that
//! `validate` must refuse (leaving nothing behind), exits that must not
//! hang, and metrics whose every series is unique and true.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use crate::http_sink::Sink;
use crate::kubernetes::{api_get, free_port};

/// `seq=` numbers of JSON events, counted.
fn seqs(events: &[serde_json::Value]) -> BTreeMap<u64, u32> {
    let mut m = BTreeMap::new();
    for e in events {
        let msg = e["message"].as_str().unwrap();
        let n = msg
            .split_whitespace()
            .find_map(|w| w.strip_prefix("seq="))
            .unwrap()
            .parse()
            .unwrap();
        *m.entry(n).or_insert(0) += 1;
    }
    m
}

fn lines(range: std::ops::Range<u64>, word: &str) -> String {
    range.map(|i| format!("{word} seq={i}\n")).collect()
}

#[test]
fn sigterm_holds_shutdown_timeout_while_a_processor_loops() {
    let env = Env::new();
    env.write("in.log", &lines(0..30, "trigger"));
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let pipeline = |processor: &str| {
        format!(
            r#"
  - name: loop
    batch: {{ max_events: 1 }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: [{processor}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
            log = env.path("in.log").display(),
            out = out.display()
        )
    };
    let spin = format!(
        r#"{{ plugin: "{}", config: {{ spin_on: trigger }}, limits: {{ call_timeout: 2s }}, on_error: {{ retries: 2, backoff: 10ms, then: dead_letter }} }}"#,
        plugin_wasm("test-misbehave").display()
    );
    let config = env.config_with("shutdown_timeout: 3s", &pipeline(&spin));
    let mut agent = Reaper(Some(start(&env, &config)));
    env.wait_log("Plugin trapped; its instance will be rebuilt.", 1);
    let (status, took) = agent.sigterm_and_wait();
    println!("looping processor: SIGTERM to exit in {took:?} (shutdown_timeout 3s)");
    assert!(status.success());
    // Every queued batch would take 3 × 2 s: the deadline held instead
    // (3 s, plus at most 0.1 s to interrupt the call; generous bound).
    assert!(took < Duration::from_secs(9), "took {took:?}");
    let log = env.log();
    assert!(
        log.contains("the pipeline is stopping and its shutdown_timeout has passed"),
        "{log}"
    );
    assert!(
        !log.contains("did not finish within shutdown_timeout"),
        "{log}"
    );
    assert!(!env.path("state/dead-letter/loop.ndjson").exists());
    // Nothing was lost: with a processor that does not loop, every line
    // comes, once.
    let config = env.config_with(
        "shutdown_timeout: 3s",
        &pipeline("{ plugin: builtin:add-fields, config: { fields: { fixed: yes } } }"),
    );
    run_once(&config);
    let events = lines_in(&out.join("events.ndjson"));
    let got = seqs(&events);
    assert_eq!(got.len(), 30, "every line");
    assert!(got.values().all(|n| *n == 1), "no line twice");
}

#[test]
fn a_plugins_stderr_goes_through_the_log_escaped_rate_limited_and_counted() {
    let env = Env::new();
    // The panic first: its few lines fit the burst; the flood then
    // empties it. One worker, so the two never run at once (with two, a
    // loaded machine let the flood take the burst first and a line of the
    // panic was dropped: 5001 counted for 5000).
    env.write(
        "in.log",
        "quiet seq=0\npanic seq=1\ntrigger seq=2\nquiet seq=3\n",
    );
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let n = 5_000;
    let config = env.config(&format!(
        r#"
  - name: noisy
    batch: {{ max_events: 1 }}
    workers: 1
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: [{{ plugin: "{misbehave}", config: {{ stderr_on: trigger, stderr_lines: {n}, panic_on: panic }}, on_error: {{ retries: 0, then: skip }} }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        log = env.path("in.log").display(),
        misbehave = plugin_wasm("test-misbehave").display(),
        out = out.display()
    ));
    let run = run_once(&config);
    assert_eq!(lines_in(&out.join("events.ndjson")).len(), 4);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // Nothing raw: no forged line, no terminal escape, no bare panic.
    assert!(!run.stderr.contains(&0x1b), "a raw escape reached stderr");
    for l in stderr.lines() {
        assert!(!l.starts_with("2026-01-01T00:00:00Z ERROR"), "forged: {l}");
        assert!(!l.starts_with("thread '"), "raw panic: {l}");
    }
    let logged: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Plugin output."))
        .collect();
    assert!(
        logged
            .iter()
            .any(|l| l.contains("pipeline=noisy") && l.contains("misbehave: panic requested")),
        "the panic message is logged, tagged: {stderr}"
    );
    let forged: Vec<&&str> = logged.iter().filter(|l| l.contains("forged")).collect();
    assert!(
        forged[0].contains(r"\u{1b}[31mforged 0"),
        "escaped: {}",
        forged[0]
    );
    // Exact bytes written, lines logged and dropped.
    let line_len = format!(
        "2026-01-01T00:00:00Z ERROR gleaner::pipeline: \x1b[31mforged {}\x1b[0m pipeline=B\n",
        0
    )
    .len() as u64;
    let bytes: u64 = (0..n)
        .map(|i| line_len + (i.to_string().len() as u64 - 1))
        .sum();
    let field = |name: &str| -> u64 {
        let l = stderr
            .lines()
            .find(|l| l.contains("Plugin summary.") && l.contains("pipeline=noisy"))
            .unwrap();
        let at = l.find(&format!(" {name}=")).unwrap() + name.len() + 2;
        l[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let panic_bytes = field("output_bytes") - bytes;
    println!(
        "plugin stderr: {} bytes written, {} lines logged, {} dropped (agent stderr {} bytes)",
        field("output_bytes"),
        field("output_lines"),
        field("output_lines_dropped"),
        run.stderr.len()
    );
    assert!(
        panic_bytes > 0 && panic_bytes < 1000,
        "the panic message: {panic_bytes} bytes"
    );
    assert_eq!(
        forged.len() as u64 + field("output_lines_dropped"),
        n,
        "every forged line logged or counted"
    );
    assert!(forged.len() <= 60, "rate-limited: {} logged", forged.len());
}

/// Runs `gleaner run` with its open-file limit set to `limit`.
fn start_with_fd_limit(env: &Env, config: &Path, limit: u64) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(env.path("agent.log"))
        .unwrap();
    let mut cmd = gleaner();
    cmd.args(["run", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // SAFETY: setrlimit(2) in the child before exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn idle_api_connections_cannot_take_the_data_paths_descriptors() {
    let env = Env::new();
    let logs = env.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("a.log"), "seq=0\n").unwrap();
    let port = free_port();
    let out = env.path("out");
    let config = env.files_pipeline(
        &format!("checkpoint_interval: 100ms\napi: {{ address: \"127.0.0.1:{port}\" }}"),
        &format!("\"{}/*.log\"", logs.display()),
        ", start_at: beginning",
    );
    let limit = 256;
    let mut agent = Reaper(Some(start_with_fd_limit(&env, &config, limit)));
    let events = out.join("events.ndjson");
    wait_until("first line", || lines_in(&events).len() == 1);
    let pid = agent.child().id();
    let before = open_fds(pid);
    // More idle connections than the agent has descriptors.
    let idle: Vec<std::net::TcpStream> = (0..300)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // Each connection past the cap closes the oldest: a probe arriving
    // after them all is still served.
    let (_, m) = api_get(port, "/metrics");
    assert_eq!(
        sample(&m, "gleaner_api_connections_evicted_total"),
        Some(237.0),
        "{m}"
    );
    let during = open_fds(pid);
    // The data path still gets descriptors: a new file is opened and read,
    // checkpoints are written, probes answer.
    std::fs::write(logs.join("b.log"), "seq=1\nseq=2\n").unwrap();
    wait_until("b.log read", || lines_in(&events).len() == 3);
    assert_eq!(api_get(port, "/healthz").0, 200);
    let (_, metrics) = api_get(port, "/metrics");
    assert_eq!(
        sample(&metrics, "gleaner_checkpoint_write_errors_total"),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "gleaner_api_accept_errors_total"),
        Some(0.0)
    );
    // Idle connections are closed by the agent: each read ends.
    let mut closed = 0;
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = [0u8; 16];
        if matches!(s.read(&mut buf), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 300);
    let after = open_fds(pid);
    println!(
        "idle API connections: fds {before} before, {during} with 300 idle clients (limit {limit}), {after} after they were closed"
    );
    assert!(
        during <= before + 64 + 2,
        "the connection cap bounds descriptors: {during}"
    );
    stop(agent.take());
}

/// `POST path` with an optional bearer token: the status.
fn post(port: u16, path: &str, token: Option<&str>) -> u16 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text[9..12].parse().unwrap()
}

#[test]
fn reload_over_the_api_needs_the_token_when_one_is_set() {
    let env = Env::new();
    env.write("a.log", "seq=0\n");
    let port = free_port();
    let pipeline = format!(
        r#"
  - name: a
    inputs: [{{ type: file, paths: ["{}"] }}]
    flushers: [{{ plugin: builtin:stdout, grants: {{ stdout: true }} }}]
"#,
        env.path("a.log").display()
    );
    let config = env.config_with(
        &format!("api: {{ address: \"0.0.0.0:{port}\", token: \"s3cret-token\" }}"),
        &pipeline,
    );
    let agent = start(&env, &config);
    env.wait_log("Serving the API", 1);
    assert_eq!(post(port, "/api/v1/reload", None), 401);
    assert_eq!(post(port, "/api/v1/reload", Some("wrong-token!")), 401);
    assert_eq!(post(port, "/api/v1/reload", Some("s3cret-token")), 200);
    assert_eq!(api_get(port, "/readyz").0, 200, "reads need no token");
    // Events themselves, and sending dead letters back, need it too.
    assert_eq!(api_get(port, "/api/v1/tap?pipeline=a").0, 401);
    let replay = "/api/v1/pipelines/a/dead-letter/replay";
    assert_eq!(post(port, replay, None), 401);
    assert_eq!(
        post(port, replay, Some("s3cret-token")),
        200,
        "nothing to send back"
    );
    // The CLI sends GLEANER_API_TOKEN.
    let tap = |token: &str| {
        gleaner()
            .args([
                "tap",
                "a",
                "--limit",
                "1",
                "--api",
                &format!("127.0.0.1:{port}"),
            ])
            .env("GLEANER_API_TOKEN", token)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let refused = tap("wrong-token!").wait_with_output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("answered 401"));
    let mut opened = tap("s3cret-token");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(opened.stderr.take().unwrap()),
        &mut first,
    )
    .unwrap();
    assert!(
        first.starts_with("Tapping pipeline=a; stage=input"),
        "{first}"
    );
    opened.kill().unwrap();
    opened.wait().unwrap();
    stop(agent);
    let log = env.log();
    assert!(!log.contains("s3cret"), "the token is never logged");
    assert!(!log.contains("without api.token"), "{log}");
    // Beyond loopback without a token: said at start.
    let config = env.config_with(
        &format!("api: {{ address: \"0.0.0.0:{port}\" }}"),
        &pipeline,
    );
    let agent = start(&env, &config);
    env.wait_log("Serving the API", 2);
    stop(agent);
    assert!(
        env.log()
            .contains("The API listens beyond loopback without api.token")
    );
}

/// `gleaner validate`: (exit code, stderr).
fn validate(config: &Path) -> (Option<i32>, String) {
    let out = gleaner()
        .arg("validate")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_refuses_what_run_could_not_do() {
    let env = Env::new();
    env.write("in.log", "x\n");
    let flusher = |config: &str, grants: &str| {
        format!(
            r#"
  - name: a
    inputs: [{{ type: file, paths: ["{}"] }}]
    flushers: [{{ plugin: builtin:http, config: {config}, grants: {grants} }}]
"#,
            env.path("in.log").display()
        )
    };
    let cases = [
        (
            flusher(
                r#"{ url: "http://127.0.0.1:9/x" }"#,
                r#"{ hosts: ["127.0.0.1:1"] }"#,
            ),
            "pipelines[0].flushers[0].config.url: `http://127.0.0.1:9/x` reaches 127.0.0.1:9, which is not in grants.hosts",
        ),
        (
            flusher(
                r#"{ url: "https://logs.example.org/x" }"#,
                r#"{ hosts: ["logs.example.org:80"] }"#,
            ),
            "reaches logs.example.org:443, which is not in grants.hosts",
        ),
        (
            flusher(
                r#"{ url: "http://127.0.0.1:9/x" }"#,
                r#"{ hosts: ["127.0.0.1:9"], dirs: ["/"] }"#,
            ),
            "pipelines[0].flushers[0].grants.dirs[0]: granting `/` gives the plugin the whole host",
        ),
        (
            flusher(
                r#"{ url: "http://127.0.0.1:9/x" }"#,
                &format!(
                    r#"{{ hosts: ["127.0.0.1:9"], dirs: ["{}"] }}"#,
                    env.path("state").display()
                ),
            ),
            "overlaps data_dir",
        ),
    ];
    for (pipelines, want) in cases {
        let config = env.config(&pipelines);
        let (code, err) = validate(&config);
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(want), "want `{want}` in: {err}");
    }
    // What the grants allow validates.
    let config = env.config(&flusher(
        r#"{ url: "http://127.0.0.1:9/x" }"#,
        r#"{ hosts: ["127.0.0.1:9"] }"#,
    ));
    assert_eq!(validate(&config).0, Some(0));
}

#[test]
fn a_refused_config_creates_nothing() {
    let env = Env::new();
    env.write("in.log", "x\n");
    let state = env.path("fresh-state");
    let out = env.path("fresh-out");
    let text = format!(
        r#"data_dir: {state}
plugin_cache_dir: {cache}
pipelines:
  - name: good
    inputs: [{{ type: file, paths: ["{log}"] }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
  - name: bad
    inputs: [{{ type: file, paths: ["{log}"] }}]
    processors: [{{ plugin: builtin:parse-regex, config: {{ pattern: "(" }} }}]
    flushers: [{{ plugin: builtin:stdout, grants: {{ stdout: true }} }}]
"#,
        state = state.display(),
        cache = shared_cache().display(),
        log = env.path("in.log").display(),
        out = out.display()
    );
    let config = env.path("gleaner.yaml");
    std::fs::write(&config, text).unwrap();
    for cmd in ["validate", "run"] {
        let o = gleaner()
            .arg(cmd)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{cmd}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("pipelines[1].processors[0]"));
        assert!(!state.exists(), "{cmd} left data_dir behind");
        assert!(!out.exists(), "{cmd} left the granted directory behind");
    }
}

#[test]
fn a_closed_stdout_ends_the_stdout_pipeline_and_the_run() {
    let env = Env::new();
    let n = 100_000;
    env.write("in.log", &lines(0..n, "line"));
    let config = env.config(&format!(
        r#"
  - name: out
    inputs: [{{ type: file, paths: ["{}"], start_at: beginning }}]
    flushers: [{{ plugin: builtin:stdout, grants: {{ stdout: true }} }}]
"#,
        env.path("in.log").display()
    ));
    // `gleaner run --exit-on-eof | head -3`
    let mut child = Reaper(Some(
        gleaner()
            .args(["run", "--exit-on-eof", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(env.path("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    ));
    let stdout = child.0.as_mut().unwrap().stdout.take().unwrap();
    let head: Vec<String> = BufReader::new(stdout)
        .lines()
        .take(3)
        .map(Result::unwrap)
        .collect();
    assert_eq!(head.len(), 3);
    let (status, took) = wait_exit(child.0.as_mut().unwrap());
    child.0 = None;
    println!("| head -3: exit {status} in {took:?} after head closed the pipe");
    assert!(status.success(), "{status}");
    assert!(env.log().contains("Stdout is closed"), "{}", env.log());
    // What was not delivered is read again on the next start: the rest
    // of the file, each line once, ending at the last.
    let rest = run_once(&config);
    let got = seqs(&json_lines(&rest.stdout));
    let first = *got.keys().next().unwrap();
    assert_eq!(
        got.len() as u64,
        n - first,
        "a contiguous rest from {first}"
    );
    assert!(got.values().all(|c| *c == 1));
    assert_eq!(*got.keys().last().unwrap(), n - 1);
}

#[test]
fn sigterm_ends_a_one_off_run_whose_destination_is_down() {
    let sink = Sink::start(&[]);
    sink.state.lock().unwrap().down = true;
    let env = Env::new();
    env.write("in.log", &lines(0..2_000, "line"));
    let config = env.config_with(
        "shutdown_timeout: 2s",
        &format!(
            r#"
  - name: web
    batch: {{ max_events: 100 }}
    inputs: [{{ type: file, paths: ["{}"], start_at: beginning }}]
    flushers:
{}
"#,
            env.path("in.log").display(),
            crate::delivery::http_flusher(&sink)
        ),
    );
    let mut agent = Reaper(Some(
        gleaner()
            .args(["run", "--exit-on-eof", "--config"])
            .arg(&config)
            .stderr(std::fs::File::create(env.path("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    ));
    env.wait_log("Flush failed; retrying.", 2);
    let (status, took) = agent.sigterm_and_wait();
    println!("--exit-on-eof, destination down: SIGTERM to exit in {took:?} (shutdown_timeout 2s)");
    assert!(status.success());
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let log = env.log();
    assert!(log.contains("Buffered an undelivered batch"), "{log}");
    assert!(
        !log.contains("did not finish within shutdown_timeout"),
        "drained by the deadline, not cut off: {log}"
    );
    // Buffered, then delivered once the destination is back.
    sink.state.lock().unwrap().down = false;
    run_once(&config);
    let got = seqs(&sink.events());
    assert_eq!(got.len(), 2_000);
    assert!(got.values().all(|c| *c == 1));
}

#[test]
fn every_metric_series_is_unique_and_what_the_docs_promise_is_exported() {
    let env = Env::new();
    let long = "z".repeat(300);
    env.write(
        "in.log",
        &format!("GET /a 200\nGET /b 404\nnot a request\n{long}\n"),
    );
    let port = free_port();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = env.config_with(
        &format!("api: {{ address: \"127.0.0.1:{port}\" }}"),
        &format!(
            r#"
  - name: p
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning, max_line_bytes: 100 }}]
    processors:
      - {{ plugin: builtin:add-fields, config: {{ fields: {{ a: "1" }} }} }}
      - {{ plugin: builtin:add-fields, config: {{ fields: {{ b: "2" }} }} }}
      - {{ plugin: builtin:parse-regex, config: {{ pattern: '^(?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d+)$' }} }}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
            log = env.path("in.log").display(),
            out = out.display()
        ),
    );
    let agent = start(&env, &config);
    wait_until("4 events", || {
        lines_in(&out.join("events.ndjson")).len() == 4
    });
    let (_, metrics) = api_get(port, "/metrics");
    stop(agent);
    let mut seen = HashSet::new();
    for l in metrics.lines().filter(|l| !l.starts_with('#')) {
        let series = l.rsplit_once(' ').unwrap().0;
        assert!(seen.insert(series.to_owned()), "series twice: {series}");
    }
    let at = |stage: &str, plugin: &str| {
        format!(
            "gleaner_plugin_calls_total{{pipeline=\"p\",stage=\"{stage}\",plugin=\"{plugin}\"}}"
        )
    };
    assert!(sample(&metrics, &at("processor0", "builtin:add-fields")).unwrap() >= 1.0);
    assert!(sample(&metrics, &at("processor1", "builtin:add-fields")).unwrap() >= 1.0);
    let counter = |name: &str| {
        format!(
            "gleaner_plugin_counter_total{{pipeline=\"p\",stage=\"processor2\",plugin=\"builtin:parse-regex\",counter=\"{name}\"}}"
        )
    };
    assert_eq!(
        sample(&metrics, &counter("matched")),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(sample(&metrics, &counter("unmatched")), Some(2.0));
    assert_eq!(
        sample(
            &metrics,
            "gleaner_input_bytes_skipped_total{pipeline=\"p\",input=\"0\"}"
        ),
        Some(200.0),
        "{metrics}"
    );
}
