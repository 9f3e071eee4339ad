//! Delivery guarantees with the real binary under load: SIGTERM restarts
//! lose and duplicate nothing, SIGKILL loses nothing, an output that is
//! down at shutdown is buffered on disk and replayed exactly once.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::common::*;
use crate::http_sink::Sink;

/// Appends `seq=N` lines to `dir/app.log` until stopped, renaming it to
/// `app.log.K` every `rotate_every` lines (logrotate's rename + create).
struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(dir: &Path, lines_per_ms: u64, rotate_every: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (dir, s, w) = (dir.to_path_buf(), stop.clone(), written.clone());
        let handle = std::thread::spawn(move || {
            let log = dir.join("app.log");
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            let mut rotations = 0;
            let pad = "x".repeat(80);
            while !s.load(Ordering::Relaxed) {
                let mut chunk = String::new();
                for _ in 0..lines_per_ms {
                    let n = w.fetch_add(1, Ordering::Relaxed);
                    chunk.push_str(&format!("seq={n:08} {pad}\n"));
                    if (n + 1) % rotate_every == 0 {
                        file.write_all(chunk.as_bytes()).unwrap();
                        chunk.clear();
                        rotations += 1;
                        std::fs::rename(&log, dir.join(format!("app.log.{rotations}"))).unwrap();
                        file = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&log)
                            .unwrap();
                    }
                }
                file.write_all(chunk.as_bytes()).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Writer {
            stop,
            written,
            handle: Some(handle),
        }
    }

    /// Stops writing; returns the number of lines written.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.written.load(Ordering::Relaxed)
    }
}

/// The writer may create `app.log` before the tailer's first scan, which
/// would start a file found then at its end: read from the beginning.
fn file_config(env: &Env) -> PathBuf {
    let out = env.path("out");
    std::fs::create_dir_all(env.path("logs")).unwrap();
    let config = env.config(&format!(
        r#"
  - name: load
    batch: {{ max_events: 200, linger: 20ms }}
    inputs:
      - type: file
        paths: ["{logs}/app.log*"]
        start_at: beginning
        poll_interval: 50ms
        rescan_interval: 500ms
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson", max_bytes: 10000000000 }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        logs = env.path("logs").display(),
        out = out.display()
    ));
    with_top_level(&config, "checkpoint_interval: 100ms");
    config
}

/// How often each sequence number was delivered, and how many lines are
/// torn (a SIGKILL in the middle of the file flusher's write).
fn delivered(path: &Path) -> (BTreeMap<u64, u32>, usize) {
    let mut seen = BTreeMap::new();
    let mut torn = 0;
    let text = std::fs::read(path).unwrap_or_default();
    for line in String::from_utf8_lossy(&text).lines() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(e) => {
                let msg = e["message"].as_str().unwrap();
                let n: u64 = msg[4..12].parse().unwrap();
                *seen.entry(n).or_insert(0) += 1;
            }
            Err(_) => torn += 1,
        }
    }
    (seen, torn)
}

/// A pipeline's `builtin:http` flusher entry (YAML, indented for
/// `flushers:`) sending to `sink`, with short retry backoffs.
pub fn http_flusher(sink: &Sink) -> String {
    format!(
        r#"      - plugin: builtin:http
        config: {{ url: "http://{addr}/" }}
        grants: {{ hosts: ["{addr}"] }}
        on_error: {{ backoff: 20ms, max_backoff: 100ms }}"#,
        addr = sink.addr
    )
}

/// A counter from the `Pipeline stopped.` summary of `pipeline` in `log`.
fn summary_field(log: &str, pipeline: &str, name: &str) -> u64 {
    let summary = log
        .lines()
        .find(|l| l.contains("Pipeline stopped.") && l.contains(&format!("pipeline={pipeline} ")))
        .unwrap_or_else(|| panic!("no summary of {pipeline} in:\n{log}"));
    let at = summary.find(&format!(" {name}=")).unwrap() + name.len() + 2;
    summary[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Adds a top-level key (e.g. `shutdown_timeout: 200ms`) to a test config.
fn with_top_level(config: &Path, line: &str) {
    let text = std::fs::read_to_string(config)
        .unwrap()
        .replace("pipelines:", &format!("{line}\npipelines:"));
    std::fs::write(config, text).unwrap();
}

fn kill(child: &std::process::Child, sig: &str) {
    signal(
        child,
        if sig == "-KILL" {
            libc::SIGKILL
        } else {
            libc::SIGTERM
        },
    );
}

/// Runs the agent through `rounds` restarts under load, stopping it with
/// `signal`, then lets a last run catch up. Returns (written, delivered counts).
fn restarts(env: &Env, signal: &str, rounds: usize) -> (u64, BTreeMap<u64, u32>, usize) {
    let config = file_config(env);
    let first = start(env, &config);
    env.wait_log("Started pipeline.", 1);
    // GLEANER_FAULT_LINES_PER_MS raises the load (100-byte lines; 200 ≈ 20 MB/s).
    let rate = knob("GLEANER_FAULT_LINES_PER_MS", 20) as u64;
    let writer = Writer::start(&env.path("logs"), rate, 15_000);
    let mut agent = first;
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(400 + 97 * (round as u64 % 5)));
        kill(&agent, signal);
        let status = agent.wait().unwrap();
        if signal == "-TERM" {
            assert!(status.success(), "graceful stop must exit 0, got {status}");
        }
        agent = start(env, &config);
        env.wait_log("Started pipeline.", round + 2);
    }
    let written = writer.finish();
    let out = env.path("out/events.ndjson");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    // Counting lines is cheap but counts duplicates too: once there are
    // enough lines, check the distinct sequence numbers.
    let count = |p: &Path| {
        std::fs::read(p)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count() as u64)
            .unwrap_or(0)
    };
    while std::time::Instant::now() < deadline {
        if count(&out) >= written && delivered(&out).0.len() as u64 >= written {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (seen, _) = delivered(&out);
    if (seen.len() as u64) < written {
        let missing: Vec<u64> = (0..written).filter(|n| !seen.contains_key(n)).collect();
        let log = env.log();
        let tail: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("tailing")
                    || l.contains("rotated")
                    || l.contains("renamed")
                    || l.contains("deleted")
                    || l.contains("Started pipeline")
            })
            .collect();
        panic!(
            "{} missing of {written}; first {:?} last {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            missing.last(),
            tail.join("\n")
        );
    }
    stop(agent);
    let (seen, torn) = delivered(&out);
    (written, seen, torn)
}

/// Restarts per test (GLEANER_FAULT_ROUNDS, default 6).
fn rounds() -> usize {
    knob("GLEANER_FAULT_ROUNDS", 6)
}

#[test]
fn sigterm_restarts_under_load_and_rotation_lose_and_duplicate_nothing() {
    let env = Env::new();
    let (written, seen, torn) = restarts(&env, "-TERM", rounds());
    eprintln!(
        "SIGTERM x{}: {written} lines (~{} MB), 0 torn expected, {torn} torn",
        rounds(),
        written / 10_000
    );
    assert_eq!(torn, 0, "a graceful stop never tears a record");
    assert!(written > 20_000, "the load must span rotations: {written}");
    assert_eq!(seen.len() as u64, written, "lost lines");
    let dups: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(dups.is_empty(), "duplicated lines: {dups:?}");
    assert!(
        env.log().contains("resumed=true"),
        "restarts resume from checkpoints"
    );
}

#[test]
fn sigkill_under_load_and_rotation_loses_nothing() {
    let env = Env::new();
    let (written, seen, torn) = restarts(&env, "-KILL", rounds());
    assert_eq!(seen.len() as u64, written, "lost lines");
    assert!(
        seen.keys().copied().eq(0..written),
        "every sequence number is there"
    );
    let dups = seen.values().filter(|c| **c > 1).count();
    eprintln!(
        "SIGKILL x{}: {written} lines (~{} MB), {dups} delivered twice (in flight at the kill), {torn} torn records",
        rounds(),
        written / 10_000
    );
}

#[test]
fn an_output_down_at_shutdown_is_buffered_on_disk_and_replayed_once() {
    let sink = Sink::start(&[]);
    sink.state.lock().unwrap().down = true;
    let env = Env::new();
    let text: String = (0..300).map(|i| format!("seq={i:08}\n")).collect();
    env.write("in.log", &text);
    let config = env.config(&format!(
        r#"
  - name: web
    batch: {{ max_events: 100, linger: 20ms }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    flushers:
{http}
"#,
        log = env.path("in.log").display(),
        http = http_flusher(&sink)
    ));
    with_top_level(&config, "shutdown_timeout: 300ms");
    let agent = start(&env, &config);
    env.wait_log("Flush failed; retrying.", 3);
    stop(agent);
    let log = env.log();
    assert_eq!(
        log.matches("Buffered an undelivered batch").count(),
        3,
        "{log}"
    );
    assert!(log.contains("events_buffered=300"), "{log}");
    let buffered = std::fs::read_dir(env.path("state/buffer/web/0"))
        .unwrap()
        .count();
    assert_eq!(buffered, 3);

    sink.state.lock().unwrap().down = false;
    let agent = start(&env, &config);
    wait_until("the buffer to be replayed", || sink.events().len() >= 300);
    stop(agent);
    let events = sink.events();
    assert_eq!(events.len(), 300, "each event exactly once");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["message"], format!("seq={i:08}"), "in order");
    }
    assert!(
        env.log()
            .contains("Replaying the disk buffer before new input.")
    );
    assert_eq!(
        std::fs::read_dir(env.path("state/buffer/web/0"))
            .unwrap()
            .count(),
        0,
        "replayed segments are removed"
    );
}

#[test]
fn the_checkpoint_file_records_the_delivered_offset_of_each_file() {
    let env = Env::new();
    env.write("logs/a.log", "one\ntwo\nunterminated");
    let out = env.path("out");
    let config = env.config(&format!(
        r#"
  - name: cp
    inputs: [{{ type: file, paths: ["{logs}/*.log"], start_at: beginning, partial_line_timeout: 1h }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/e.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        logs = env.path("logs").display(),
        out = out.display()
    ));
    let agent = start(&env, &config);
    wait_until("two events", || lines_in(&out.join("e.ndjson")).len() >= 2);
    stop(agent);
    let cp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("state/checkpoints.json")).unwrap())
            .unwrap();
    assert_eq!(cp["version"], 1);
    let files = cp["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["input"], "cp/0");
    assert_eq!(
        files[0]["offset"], 8,
        "the held unterminated line is not committed"
    );
    assert_eq!(files[0]["fingerprint_len"], 20);
    // The rest of the line arrives while Gleaner is down: nothing is lost.
    env.append("logs/a.log", " now ends\n");
    let agent = start(&env, &config);
    wait_until("three events", || {
        lines_in(&out.join("e.ndjson")).len() >= 3
    });
    stop(agent);
    let msgs: Vec<String> = lines_in(&out.join("e.ndjson"))
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(msgs, vec!["one", "two", "unterminated now ends"]);
}

#[test]
fn a_dead_output_stalls_only_its_own_pipeline() {
    let sink = Sink::start(&[]);
    sink.state.lock().unwrap().down = true;
    let env = Env::new();
    // More than the tailer reads in one turn (4 MiB), so stopping can be seen.
    let pad = "x".repeat(90);
    let text: String = (0..100_000)
        .map(|i| format!("seq={i:08} {pad}\n"))
        .collect();
    env.write("in.log", &text);
    let out = env.path("out");
    let config = env.config(&format!(
        r#"
  - name: stuck
    queue_batches: 2
    batch: {{ max_events: 100, linger: 20ms }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    flushers:
{http}
  - name: healthy
    batch: {{ max_events: 100, linger: 20ms }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/healthy.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        log = env.path("in.log").display(),
        http = http_flusher(&sink),
        out = out.display()
    ));
    with_top_level(&config, "shutdown_timeout: 200ms");
    let agent = start(&env, &config);
    wait_until("the healthy pipeline to deliver everything", || {
        lines_in(&out.join("healthy.ndjson")).len() >= 100_000
    });
    assert!(
        sink.events().is_empty(),
        "the stuck output accepted nothing"
    );
    stop(agent);
    assert_eq!(lines_in(&out.join("healthy.ndjson")).len(), 100_000);
    // The stuck pipeline read only what its bounded queues hold, and
    // buffered exactly that at shutdown.
    let log = env.log();
    let stopped = log
        .lines()
        .find(|l| l.contains("pipeline=stuck"))
        .unwrap_or_default();
    let field = |name: &str| summary_field(&log, "stuck", name);
    assert!(
        field("lines_read") < 100_000,
        "back-pressure must stop reading: {stopped}"
    );
    assert_eq!(field("events_buffered"), field("events_in"), "{stopped}");
}

#[test]
fn a_deleted_file_is_released_after_its_deadline_when_the_output_is_dead() {
    let sink = Sink::start(&[]);
    sink.state.lock().unwrap().down = true;
    let env = Env::new();
    let pad = "x".repeat(90);
    let text: String = (0..20_000).map(|i| format!("seq={i:08} {pad}\n")).collect();
    let total = text.len() as u64;
    env.write("logs/app.log", &text);
    let config = env.config(&format!(
        r#"
  - name: rel
    queue_batches: 1
    batch: {{ max_events: 50, linger: 20ms }}
    inputs:
      - type: file
        paths: ["{logs}/*.log"]
        start_at: beginning
        poll_interval: 50ms
        release_deleted_after: 500ms
    flushers:
{http}
"#,
        logs = env.path("logs").display(),
        http = http_flusher(&sink)
    ));
    with_top_level(&config, "shutdown_timeout: 200ms");
    let agent = start(&env, &config);
    env.wait_log("Flush failed; retrying.", 2);
    std::fs::remove_file(env.path("logs/app.log")).unwrap();
    env.wait_log("Released a deleted file before its end", 1);
    stop(agent);
    let log = env.log();
    let summary = log
        .lines()
        .find(|l| l.contains("Pipeline stopped."))
        .unwrap_or_default()
        .to_owned();
    let field = |name: &str| summary_field(&log, "rel", name);
    assert_eq!(field("files_released"), 1, "{summary}");
    let given_up = field("bytes_given_up");
    assert!(
        given_up > 0,
        "the dead output kept the file from being drained: {summary}"
    );

    // What was read is delivered after the output returns; with what was
    // given up it accounts for every byte of the file.
    sink.state.lock().unwrap().down = false;
    let agent = start(&env, &config);
    let read = field("lines_read");
    wait_until("the buffered batches", || {
        sink.events().len() as u64 >= read
    });
    stop(agent);
    let delivered = sink.events().len() as u64;
    assert_eq!(delivered, read);
    assert_eq!(
        delivered * 104 + given_up,
        total,
        "every byte is delivered or counted as given up"
    );
}

/// Peak resident memory of a process, in KiB (VmHWM).
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn an_http_output_down_under_load_loses_nothing_and_memory_stays_bounded() {
    // GLEANER_OUTAGE_SECS and GLEANER_OUTAGE_LINES_PER_MS (100-byte lines)
    // scale this up; the defaults keep CI short.
    let secs: u64 = knob("GLEANER_OUTAGE_SECS", 2) as u64;
    let rate: u64 = knob("GLEANER_OUTAGE_LINES_PER_MS", 10) as u64;
    let sink = Sink::start(&[]);
    let env = Env::new();
    std::fs::create_dir_all(env.path("logs")).unwrap();
    let config = env.config(&format!(
        r#"
  - name: out
    batch: {{ max_events: 1000, linger: 50ms }}
    inputs: [{{ type: file, paths: ["{logs}/app.log*"], poll_interval: 50ms, start_at: beginning }}]
    flushers:
      - plugin: builtin:http
        config: {{ url: "http://{addr}/", compression: zstd }}
        grants: {{ hosts: ["{addr}"] }}
        on_error: {{ backoff: 50ms, max_backoff: 1s }}
"#,
        logs = env.path("logs").display(),
        addr = sink.addr
    ));
    let agent = start(&env, &config);
    env.wait_log("Started pipeline.", 1);
    let writer = Writer::start(&env.path("logs"), rate, 200_000);
    std::thread::sleep(Duration::from_millis(500));
    sink.state.lock().unwrap().down = true;
    std::thread::sleep(Duration::from_secs(secs));
    sink.state.lock().unwrap().down = false;
    std::thread::sleep(Duration::from_millis(500));
    let written = writer.finish();
    wait_until("every line to arrive", || {
        sink.events().len() as u64 >= written
    });
    let rss = peak_rss_kib(agent.id());
    stop(agent);
    let mut seen = BTreeMap::new();
    for e in sink.events() {
        let n: u64 = e["message"].as_str().unwrap()[4..12].parse().unwrap();
        *seen.entry(n).or_insert(0u32) += 1;
    }
    assert_eq!(seen.len() as u64, written, "lost lines");
    assert!(seen.values().all(|c| *c == 1), "duplicated lines");
    eprintln!(
        "HTTP down {secs}s at ~{} MB/s: {written} lines, 0 lost, 0 duplicated, peak RSS {} MiB",
        rate / 10,
        rss / 1024
    );
}

fn spill_config(env: &Env, sink: &Sink, spill: &str) -> PathBuf {
    env.config(&format!(
        r#"
  - name: sp
    queue_batches: 1
    batch: {{ max_events: 100, linger: 20ms }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    flushers:
{http}
        spill: {spill}
"#,
        log = env.path("in.log").display(),
        http = http_flusher(sink)
    ))
}

#[test]
fn spilling_keeps_reading_while_the_output_is_down_then_delivers_in_order_once() {
    let sink = Sink::start(&[]);
    sink.state.lock().unwrap().down = true;
    let env = Env::new();
    let text: String = (0..5000).map(|i| format!("seq={i:08}\n")).collect();
    env.write("in.log", &text);
    let config = spill_config(&env, &sink, "{ max_mib: 64 }");
    let agent = start(&env, &config);
    // With the output down and a one-batch queue, only spilling lets the
    // input read the whole file.
    wait_until("every batch spilled to disk", || {
        std::fs::read_dir(env.path("state/buffer/sp/0"))
            .map(|d| d.count())
            .unwrap_or(0)
            >= 50
    });
    assert!(sink.events().is_empty());
    sink.state.lock().unwrap().down = false;
    wait_until("the buffer to drain", || sink.events().len() >= 5000);
    stop(agent);
    let events = sink.events();
    assert_eq!(events.len(), 5000, "each event exactly once");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["message"], format!("seq={i:08}"), "in order");
    }
    assert_eq!(
        std::fs::read_dir(env.path("state/buffer/sp/0"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_full_spill_buffer_drops_its_oldest_batches_and_counts_them() {
    let sink = Sink::start(&[]);
    sink.state.lock().unwrap().down = true;
    let env = Env::new();
    // Incompressible lines, so 3 MiB of input overflow a 1 MiB buffer.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut text = String::new();
    for i in 0..12_000 {
        let mut noise = String::new();
        for _ in 0..15 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push_str(&format!("{x:016x}"));
        }
        text.push_str(&format!("seq={i:08} {noise}\n"));
    }
    env.write("in.log", &text);
    let config = spill_config(&env, &sink, "{ max_mib: 1, when_full: drop_oldest }");
    let agent = start(&env, &config);
    env.wait_log("Disk buffer full: dropped its oldest batch.", 1);
    wait_until("the input to finish", || {
        env.log().matches("Disk buffer full").count() >= 10
    });
    std::thread::sleep(Duration::from_millis(500));
    sink.state.lock().unwrap().down = false;
    std::thread::sleep(Duration::from_millis(1500));
    stop(agent);
    let log = env.log();
    let summary = log
        .lines()
        .find(|l| l.contains("Pipeline stopped."))
        .unwrap_or_default()
        .to_owned();
    let field = |name: &str| summary_field(&log, "sp", name);
    let dropped = field("events_dropped");
    let delivered = sink.events().len() as u64;
    let buffered_left: u64 = std::fs::read_dir(env.path("state/buffer/sp/0"))
        .unwrap()
        .count() as u64
        * 100;
    assert!(dropped > 0, "{summary}");
    assert_eq!(
        delivered + dropped + buffered_left,
        12_000,
        "every event delivered, dropped and counted, or still buffered: {summary}"
    );
    // What survived is the newest data, in order.
    let seqs: Vec<u64> = sink
        .events()
        .iter()
        .map(|e| e["message"].as_str().unwrap()[4..12].parse().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    assert!(
        seqs.first().copied().unwrap_or(0) >= dropped,
        "the oldest were dropped"
    );
}
