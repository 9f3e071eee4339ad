//! Config reload while lines flow: only changed pipelines are touched, a
//! processor-only change is swapped at a batch boundary, an invalid config
//! changes nothing, and nothing is lost or delivered twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::common::*;
use crate::kubernetes::{api_call, free_port};

/// The config of three pipelines `a`, `b`, `c`; `b` tags its events with
/// `version`, `c` batches with `linger`.
fn config_text(
    env: &Env,
    port: u16,
    version: &str,
    b_pattern: Option<&str>,
    linger_c: &str,
) -> String {
    let out = env.path("out");
    let pipeline = |name: &str, processors: String, linger: &str| {
        format!(
            r#"  - name: {name}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    batch: {{ linger: {linger} }}
{processors}    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/{name}.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
            log = env.path(&format!("{name}.log")).display(),
            out = out.display(),
        )
    };
    let mut b_processors = format!(
        "    processors:\n      - plugin: builtin:add-fields\n        config: {{ fields: {{ version: \"{version}\" }} }}\n"
    );
    if let Some(p) = b_pattern {
        b_processors.push_str(&format!(
            "      - plugin: builtin:parse-regex\n        config: {{ pattern: \"{p}\" }}\n"
        ));
    }
    format!(
        "data_dir: {}\nplugin_cache_dir: {}\napi: {{ address: \"127.0.0.1:{port}\" }}\npipelines:\n{}{}{}",
        env.path("state").display(),
        shared_cache().display(),
        pipeline("a", String::new(), "20ms"),
        pipeline("b", b_processors, "20ms"),
        pipeline("c", String::new(), linger_c),
    )
}

/// Replaces the config file as editors and ConfigMap updates do: a new
/// file renamed over the old one.
fn replace_config(env: &Env, text: &str) {
    let tmp = env.path("gleaner.yaml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, env.path("gleaner.yaml")).unwrap();
}

#[test]
fn reload_touches_only_changed_pipelines_and_loses_nothing() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("out")).unwrap();
    for name in ["a", "b", "c"] {
        env.write(&format!("{name}.log"), "");
    }
    let port = free_port();
    let config = env.path("gleaner.yaml");
    std::fs::write(&config, config_text(&env, port, "1", None, "20ms")).unwrap();
    let agent = start(&env, &config);
    env.wait_log("Serving the API", 1);

    // Lines flow into all three files until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = paced_writer(
        ["a", "b", "c"]
            .iter()
            .map(|n| env.path(&format!("{n}.log")))
            .collect(),
        500,
        stop.clone(),
        written.clone(),
    );
    let wait_written =
        |n: usize| wait_until("lines written", || written.load(Ordering::Relaxed) >= n);

    // An invalid config (a bad regex in b) changes nothing.
    wait_written(200);
    replace_config(&env, &config_text(&env, port, "2", Some("("), "20ms"));
    env.wait_log("Config not reloaded", 1);
    // b's processors change (swapped), c's batching changes (rebuilt).
    wait_written(400);
    replace_config(&env, &config_text(&env, port, "2", None, "30ms"));
    env.wait_log("Config reloaded.", 1);
    // SIGHUP and the API reload the same file: nothing to change.
    wait_written(600);
    signal(&agent, libc::SIGHUP);
    env.wait_log("Config reloaded.", 2);
    let (status, body) = api_call(port, "POST", "/api/v1/reload");
    assert_eq!(status, 200, "{body}");
    let outcome: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        outcome,
        serde_json::json!({"applied": true, "trigger": "api", "pipelines": [["a", "unchanged"], ["b", "unchanged"], ["c", "unchanged"]]})
    );
    wait_written(800);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let n = written.load(Ordering::Relaxed);
    for name in ["a", "b", "c"] {
        wait_until(&format!("{name} complete"), || {
            lines_in(&env.path(&format!("out/{name}.ndjson"))).len() >= n
        });
    }
    // Metrics: the reloads by result, and pipeline a's counters, which
    // started once and saw every line.
    let (status, metrics) = crate::kubernetes::api_get(port, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "gleaner_config_reloads_total{result=\"applied\"} 3".to_owned(),
        "gleaner_config_reloads_total{result=\"failed\"} 1".to_owned(),
        format!("gleaner_input_lines_total{{pipeline=\"a\",input=\"0\"}} {n}"),
        format!("gleaner_pipeline_events_delivered_total{{pipeline=\"a\"}} {n}"),
        "gleaner_pipeline_up{pipeline=\"b\",source=\"the config file\"} 1".to_owned(),
        "# TYPE gleaner_plugin_calls_total counter".to_owned(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    stop_agent(agent);
    let log = env.log();

    // Every line once, in order, in every pipeline.
    for name in ["a", "b", "c"] {
        let got: Vec<String> = lines_in(&env.path(&format!("out/{name}.ndjson")))
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect();
        let want: Vec<String> = (0..n).map(|i| format!("seq={i:08}")).collect();
        assert!(got == want, "{name}: {} lines, want {n}", got.len());
    }
    // b's events went through exactly one version each: 1s, then 2s.
    let versions: Vec<String> = lines_in(&env.path("out/b.ndjson"))
        .iter()
        .map(|e| e["version"].as_str().unwrap().to_owned())
        .collect();
    let first_2 = versions.iter().position(|v| v == "2").unwrap();
    assert!(first_2 > 0 && versions[first_2..].iter().all(|v| v == "2"));
    assert!(versions[..first_2].iter().all(|v| v == "1"));
    // a never restarted, b was swapped in place, c rebuilt once.
    let started = |p: &str| starts(&log, p);
    assert_eq!(
        (started("a"), started("b"), started("c")),
        (1, 1, 2),
        "{log}"
    );
    assert_eq!(
        log.matches("Processors swapped at a batch boundary.")
            .count(),
        1
    );
    assert!(
        log.contains("pipelines[1].processors[1] (builtin:parse-regex): plugin refused its config"),
        "{log}"
    );
}

fn stop_agent(agent: std::process::Child) {
    stop(agent);
}

/// Writes `seq=N` lines to every file at about `per_sec` lines/s each (in
/// 10 ms chunks) until `stop`; counts lines written per file in `written`.
pub fn paced_writer(
    paths: Vec<std::path::PathBuf>,
    per_sec: usize,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::Write;
        let mut files: Vec<_> = paths
            .iter()
            .map(|p| {
                std::io::BufWriter::with_capacity(
                    1 << 20,
                    std::fs::OpenOptions::new().append(true).open(p).unwrap(),
                )
            })
            .collect();
        let chunk = (per_sec / 100).max(1);
        let started = std::time::Instant::now();
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            for f in &mut files {
                for k in i..i + chunk {
                    writeln!(f, "seq={k:08}").unwrap();
                }
                f.flush().unwrap();
            }
            i += chunk;
            written.store(i, Ordering::Relaxed);
            // Paced against the start, so a slow turn is caught up.
            let due = started + std::time::Duration::from_secs_f64(i as f64 / per_sec as f64);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    })
}

/// The `pause_us` of every "Swap pause measured." line, sorted.
fn swap_pauses(log: &str) -> Vec<u64> {
    let mut v: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("Swap pause measured."))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("pause_us="))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    v.sort_unstable();
    v
}

/// Swapping a processor again and again under load loses and duplicates
/// nothing, and every event goes through exactly one version. The suite
/// runs it small; the figure run (docs/benchmarks.md) is
/// `GLEANER_SWAP_RATE=100000 GLEANER_SWAPS=20 GLEANER_SWAP_EVERY_MS=3000`.
#[test]
fn processor_swaps_under_load_keep_every_event_once() {
    let rate = knob("GLEANER_SWAP_RATE", 20_000);
    let swaps = knob("GLEANER_SWAPS", 4);
    let every = std::time::Duration::from_millis(knob("GLEANER_SWAP_EVERY_MS", 400) as u64);
    let env = Env::new();
    std::fs::create_dir_all(env.path("out")).unwrap();
    env.write("s.log", "");
    let config_for = |version: usize| {
        format!(
            r#"  - name: s
    queue_batches: 16
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: [{{ plugin: builtin:add-fields, config: {{ fields: {{ version: "{version}" }} }} }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/s.ndjson", max_bytes: 100000000000 }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
            log = env.path("s.log").display(),
            out = env.path("out").display(),
        )
    };
    let config = env.config(&config_for(0));
    let agent = start(&env, &config);
    env.wait_log("Started pipeline.", 1);
    let stop_writing = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let t0 = std::time::Instant::now();
    let writer = paced_writer(
        vec![env.path("s.log")],
        rate,
        stop_writing.clone(),
        written.clone(),
    );
    for k in 1..=swaps {
        std::thread::sleep(every);
        let text = std::fs::read_to_string(&config).unwrap().replace(
            &format!("version: \"{}\"", (k - 1) % 2),
            &format!("version: \"{}\"", k % 2),
        );
        replace_config(&env, &text);
        env.wait_log("Swap pause measured.", k);
    }
    std::thread::sleep(every);
    stop_writing.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let n = written.load(Ordering::Relaxed);
    let out = env.path("out/s.ndjson");
    wait_until("every line delivered", || {
        std::fs::read(&out).map_or(0, |b| memchr_count(&b)) >= n
    });
    stop(agent);
    let events = lines_in(&out);
    let mut runs = 0;
    let mut last = None;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["message"].as_str().unwrap(),
            format!("seq={i:08}"),
            "event {i}"
        );
        let v = e["version"].as_str().unwrap();
        if last != Some(v) {
            runs += 1;
            last = Some(v);
        }
    }
    assert_eq!(events.len(), n);
    // One run per version in force: each event saw exactly one version.
    assert_eq!(runs, swaps + 1);
    let pauses = swap_pauses(&env.log());
    assert_eq!(pauses.len(), swaps);
    let pct =
        |q: f64| pauses[((q * pauses.len() as f64).ceil() as usize).clamp(1, pauses.len()) - 1];
    eprintln!(
        "swaps under load: {n} lines in {secs:.1} s ({:.0} lines/s), {swaps} swaps, {n} delivered once, {runs} version runs; pause p50 {} us, p99 {} us, max {} us",
        n as f64 / secs,
        pct(0.5),
        pct(0.99),
        pauses[pauses.len() - 1]
    );
}

fn memchr_count(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

/// Reloading a config that changes one of five pipelines: the other four
/// keep delivering through it (their per-second rates are printed; the
/// figure run is `GLEANER_RELOAD_RATE=20000 GLEANER_RELOAD_SECS=10`), the
/// changed one is rebuilt on its checkpoints, and every line arrives once.
#[test]
fn reloading_one_of_five_pipelines_leaves_the_other_four_flowing() {
    let rate = knob("GLEANER_RELOAD_RATE", 2_000);
    let secs = knob("GLEANER_RELOAD_SECS", 4);
    let env = Env::new();
    std::fs::create_dir_all(env.path("out")).unwrap();
    let names: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
    let port = free_port();
    let text_for = |linger_p2: &str| {
        let mut t = format!(
            "data_dir: {}\nplugin_cache_dir: {}\napi: {{ address: \"127.0.0.1:{port}\" }}\npipelines:\n",
            env.path("state").display(),
            shared_cache().display()
        );
        for n in &names {
            let linger = if n == "p2" { linger_p2 } else { "50ms" };
            t.push_str(&format!(
                r#"  - name: {n}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    batch: {{ linger: {linger} }}
    processors: [{{ plugin: builtin:add-fields, config: {{ fields: {{ p: "{n}" }} }} }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/{n}.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
                log = env.path(&format!("{n}.log")).display(),
                out = env.path("out").display(),
            ));
        }
        t
    };
    for n in &names {
        env.write(&format!("{n}.log"), "");
    }
    let config = env.write("gleaner.yaml", &text_for("50ms"));
    let agent = start(&env, &config);
    env.wait_log("Serving the API", 1);
    let stop_writing = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = paced_writer(
        names
            .iter()
            .map(|n| env.path(&format!("{n}.log")))
            .collect(),
        rate,
        stop_writing.clone(),
        written.clone(),
    );
    // Delivered counts of every pipeline, sampled every 250 ms.
    let delivered = |metrics: &str, n: &str| -> u64 {
        let prefix = format!("gleaner_pipeline_events_delivered_total{{pipeline=\"{n}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut samples: Vec<(f64, Vec<u64>)> = Vec::new();
    let t0 = std::time::Instant::now();
    let mut reloaded_at = None;
    while t0.elapsed().as_secs_f64() < secs as f64 {
        let (_, m) = crate::kubernetes::api_get(port, "/metrics");
        samples.push((
            t0.elapsed().as_secs_f64(),
            names.iter().map(|n| delivered(&m, n)).collect(),
        ));
        if reloaded_at.is_none() && t0.elapsed().as_secs_f64() >= secs as f64 / 2.0 {
            reloaded_at = Some(t0.elapsed().as_secs_f64());
            replace_config(&env, &text_for("80ms"));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    stop_writing.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let n = written.load(Ordering::Relaxed);
    for name in &names {
        wait_until(&format!("{name} complete"), || {
            std::fs::read(env.path(&format!("out/{name}.ndjson"))).map_or(0, |b| memchr_count(&b))
                >= n
        });
    }
    stop(agent);
    let log = env.log();
    for name in &names {
        let got = lines_in(&env.path(&format!("out/{name}.ndjson")));
        assert_eq!(got.len(), n, "{name}");
        for (i, e) in got.iter().enumerate() {
            assert_eq!(
                e["message"].as_str().unwrap(),
                format!("seq={i:08}"),
                "{name} event {i}"
            );
        }
    }
    let started = |p: &str| starts(&log, p);
    let starts: Vec<usize> = names.iter().map(|n| started(n)).collect();
    assert_eq!(starts, [1, 1, 2, 1, 1], "{log}");
    // Per-second delivery rates around the reload, for the figures.
    let reload = reloaded_at.unwrap_or(0.0);
    eprintln!("reload of p2 at {reload:.2} s; events delivered per second (1 s windows):");
    eprintln!(
        "   t(s)   {}",
        names.iter().map(|n| format!("{n:>8}")).collect::<String>()
    );
    let mut w = 0;
    while w < samples.len() {
        let Some(end) = (w..samples.len()).find(|&j| samples[j].0 - samples[w].0 >= 0.99) else {
            break;
        };
        let dt = samples[end].0 - samples[w].0;
        let row: String = (0..names.len())
            .map(|p| {
                // A rebuilt pipeline's counters start again at zero.
                let (a, b) = (samples[w].1[p], samples[end].1[p]);
                format!("{:>8.0}", b.checked_sub(a).unwrap_or(b) as f64 / dt)
            })
            .collect();
        eprintln!("{:>7.2} {row}", samples[w].0);
        w = end;
    }
}
