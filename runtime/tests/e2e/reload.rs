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
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        let paths: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| env.path(&format!("{n}.log")))
            .collect();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut files: Vec<_> = paths
                .iter()
                .map(|p| std::fs::OpenOptions::new().append(true).open(p).unwrap())
                .collect();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                for f in &mut files {
                    writeln!(f, "seq={i:06}").unwrap();
                }
                i += 1;
                written.store(i, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
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
        let want: Vec<String> = (0..n).map(|i| format!("seq={i:06}")).collect();
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
    let started = |p: &str| {
        log.lines()
            .filter(|l| l.contains("Started pipeline.") && l.contains(&format!("pipeline={p} ")))
            .count()
    };
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
