//! Tailing live files with the real binary: new lines, new files in new
//! directories (`**`), rotation, truncation, long lines, multiline and
//! unterminated last lines.

use crate::common::*;

fn live_config(env: &Env, input: &str) -> std::path::PathBuf {
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    env.config(&format!(
        r#"
  - name: live
    batch: {{ linger: 20ms }}
    inputs:
      - type: file
        poll_interval: 50ms
        rescan_interval: 200ms
{input}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        out = out.display()
    ))
}

fn messages(env: &Env) -> Vec<String> {
    lines_in(&env.path("out/events.ndjson"))
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_for_count(env: &Env, n: usize) {
    wait_until(&format!("{n} events"), || messages(env).len() >= n);
}

#[test]
fn start_at_end_skips_old_lines_and_follows_new_ones_and_new_files() {
    let env = Env::new();
    env.write("logs/app.log", "old 1\nold 2\n");
    let config = live_config(
        &env,
        &format!(
            "        paths: [\"{}/logs/**/*.log\"]",
            env.path("").display()
        ),
    );
    let agent = start(&env, &config);
    env.wait_log("Started tailing file.", 1);
    env.append("logs/app.log", "new 1\nnew 2\n");
    wait_for_count(&env, 2);
    // A file created later, in a directory created later, is read from its start.
    env.write("logs/2026/11/late.log", "late 1\n");
    wait_for_count(&env, 3);
    stop(agent);
    assert_eq!(messages(&env), vec!["new 1", "new 2", "late 1"]);
    assert!(env.log().contains("Pipeline stopped."));
}

#[test]
fn rename_rotation_and_truncation_lose_nothing_and_read_nothing_twice() {
    let env = Env::new();
    let log = env.path("app.log");
    env.write("app.log", "");
    let config = live_config(
        &env,
        &format!(
            "        paths: [\"{}\"]\n        start_at: beginning",
            log.display()
        ),
    );
    let agent = start(&env, &config);
    env.wait_log("Started tailing file.", 1);
    env.append("app.log", "a1\na2\n");
    wait_for_count(&env, 2);
    // logrotate's default: rename, then create a new file at the path.
    std::fs::rename(&log, env.path("app.log.1")).unwrap();
    env.append("app.log.1", "a3\n"); // written by the app before it reopened
    env.write("app.log", "b1\n");
    wait_for_count(&env, 4);
    // copytruncate-style truncation, then new content shorter than before.
    std::fs::write(&log, "").unwrap();
    env.wait_log("File was truncated", 1);
    env.append("app.log", "c1\n");
    wait_for_count(&env, 5);
    stop(agent);
    let got = messages(&env);
    assert_eq!(got, vec!["a1", "a2", "a3", "b1", "c1"]);
}

#[test]
fn long_lines_are_cut_and_counted_never_dropped() {
    let env = Env::new();
    let long = "x".repeat(5000);
    env.write("in.log", &format!("short\n{long}\nafter\n"));
    let config = live_config(
        &env,
        &format!(
            "        paths: [\"{}\"]\n        start_at: beginning\n        max_line_bytes: 1000",
            env.path("in.log").display()
        ),
    );
    let out = run_once(&config);
    let got = messages(&env);
    assert_eq!(got.len(), 3);
    assert_eq!(got[1], "x".repeat(1000));
    assert_eq!(got[2], "after");
    assert!(String::from_utf8_lossy(&out.stderr).contains("lines_truncated=1"));
}

#[test]
fn multiline_groups_stack_traces_and_flushes_the_last_group_on_timeout() {
    let env = Env::new();
    let log = env.path("java.log");
    env.write("java.log", "");
    let config = live_config(
        &env,
        &format!(
            "        paths: [\"{}\"]\n        start_at: beginning\n        multiline: {{ start: '^\\d{{4}}-', flush_timeout: 300ms }}",
            log.display()
        ),
    );
    let agent = start(&env, &config);
    env.wait_log("Started tailing file.", 1);
    env.append(
        "java.log",
        "2026-11-21 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)\n2026-11-21 INFO next\n",
    );
    // The second event has no successor: it is sent after flush_timeout.
    wait_for_count(&env, 2);
    stop(agent);
    assert_eq!(
        messages(&env),
        vec![
            "2026-11-21 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.B.c(B.java:1)",
            "2026-11-21 INFO next"
        ]
    );
}

#[test]
fn an_unterminated_last_line_is_held_until_it_completes_or_times_out() {
    let env = Env::new();
    let log = env.path("p.log");
    env.write("p.log", "");
    let config = live_config(
        &env,
        &format!(
            "        paths: [\"{}\"]\n        start_at: beginning\n        partial_line_timeout: 400ms",
            log.display()
        ),
    );
    let agent = start(&env, &config);
    env.wait_log("Started tailing file.", 1);
    env.append("p.log", "first ha");
    std::thread::sleep(std::time::Duration::from_millis(100));
    env.append("p.log", "lf\nno newline");
    wait_for_count(&env, 2);
    stop(agent);
    assert_eq!(messages(&env), vec!["first half", "no newline"]);
}

/// Starting on a large backlog: the log and the API show bytes read of
/// the total and an estimate of the time left while it drains, and then
/// that it is read; checkpoint lag ends at zero.
#[test]
fn a_large_backlog_reports_progress_and_time_left() {
    let env = Env::new();
    std::fs::create_dir_all(env.path("out")).unwrap();
    // 80 MiB (above the 64 MiB at which a backlog is logged).
    let line = format!("{:<99}\n", "GET /index.html 200 x");
    let lines = (80usize << 20) / line.len() + 1;
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(env.path("big.log")).unwrap());
        for _ in 0..lines {
            f.write_all(line.as_bytes()).unwrap();
        }
    }
    let size = std::fs::metadata(env.path("big.log")).unwrap().len();
    let port = crate::kubernetes::free_port();
    let config = env.write(
        "gleaner.yaml",
        &format!(
            r#"data_dir: {state}
plugin_cache_dir: {cache}
progress_interval: 100ms
api: {{ address: "127.0.0.1:{port}" }}
pipelines:
  - name: big
    inputs: [{{ type: file, paths: ["{dir}/big.log"], start_at: beginning }}]
    processors: [{{ plugin: builtin:parse-regex, config: {{ pattern: '^(?P<method>\S+) (?P<path>\S+) (?P<status>\d+)' }} }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{dir}/out/big.ndjson", max_bytes: 100000000000 }}, grants: {{ dirs: ["{dir}/out"] }} }}]
"#,
            state = env.path("state").display(),
            cache = shared_cache().display(),
            dir = env.dir.path().display(),
        ),
    );
    let agent = start(&env, &config);
    env.wait_log("Serving the API", 1);
    // While it drains, the API shows the file's size as the total.
    let mut seen_eta = false;
    wait_until("the backlog read and delivered", || {
        let (_, body) = crate::kubernetes::api_get(port, "/api/v1/pipelines");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let p = &v["pipelines"][0]["inputs"][0]["progress"];
        if p.is_null() {
            return false;
        }
        assert_eq!(p["bytes_total"], size, "{p}");
        assert_eq!(
            p["per_file"][0]["path"],
            env.path("big.log").to_str().unwrap()
        );
        if p["eta_seconds"].as_f64().is_some_and(|s| s > 0.0) {
            assert!(p["backlog_bytes"].as_u64().unwrap() > 0, "{p}");
            seen_eta = true;
        }
        p["checkpoint_lag_bytes"] == 0 && p["bytes_read"] == size
    });
    stop(agent);
    let log = env.log();
    let progress: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Reading a backlog."))
        .collect();
    // An estimate, in the API or in the log (the first sample has no rate
    // yet and logs `eta=unknown`).
    assert!(
        seen_eta
            || progress
                .iter()
                .any(|l| l.contains("eta=") && !l.contains("eta=unknown")),
        "no estimate seen:\n{log}"
    );
    assert!(!progress.is_empty(), "{log}");
    assert!(
        progress
            .iter()
            .all(|l| l.contains("total_mib=80") && l.contains("input=big/0")),
        "{progress:?}"
    );
    assert!(log.contains("Backlog read."), "{log}");
    assert_eq!(lines_in(&env.path("out/big.ndjson")).len(), lines);
}
