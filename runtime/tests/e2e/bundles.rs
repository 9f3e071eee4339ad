//! Plugin bundles while lines flow: new versions dropped into the watched
//! plugins directory are swapped in, a version that fails on its first
//! batches rolls itself back (and is not retried), a bundle whose digest
//! does not match is refused, one that does not compile changes nothing;
//! every line is delivered once, by exactly one version, and the pipeline
//! beside it never notices.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::Value;

use crate::common::*;
use crate::kubernetes::{api_call, api_get, free_port};

/// `gleaner plugin pack` into `plugins`; returns the bundle directory.
fn pack(plugins: &Path, component: &Path, version: &str, config: Option<&Path>) -> PathBuf {
    let mut cmd = gleaner();
    cmd.args(["plugin", "pack", "--name", "tagger", "--kind", "processor"])
        .args(["--version", version, "--out"])
        .arg(plugins)
        .arg(component);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "pack failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn pipelines(port: u16) -> Value {
    let (status, body) = api_get(port, "/api/v1/pipelines");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn pipeline(port: u16, name: &str) -> Value {
    pipelines(port)["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap()
}

#[test]
fn bundles_are_swapped_in_rolled_back_and_refused_while_lines_flow() {
    let env = Env::new();
    let plugins = env.path("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::create_dir_all(env.path("out")).unwrap();
    let add_fields = plugin_wasm("processor-add-fields");
    let version_config = |v: &str| {
        env.write(
            &format!("v{v}.yaml"),
            &format!("fields: {{ version: \"{v}\" }}\n"),
        )
    };
    pack(&plugins, &add_fields, "1.0.0", Some(&version_config("1")));
    for name in ["t", "u"] {
        env.write(&format!("{name}.log"), "");
    }
    let port = free_port();
    let out = env.path("out");
    let text = format!(
        r#"data_dir: {state}
plugin_cache_dir: {cache}
plugins_dir: plugins
progress_interval: 100ms
api: {{ address: "127.0.0.1:{port}" }}
pipelines:
  - name: t
    inputs: [{{ type: file, paths: ["{dir}/t.log"], start_at: beginning }}]
    batch: {{ linger: 20ms }}
    rollback: {{ first_batches: 5, max_failure_share: 0.2 }}
    processors: [{{ plugin: tagger }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/t.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
  - name: u
    inputs: [{{ type: file, paths: ["{dir}/u.log"], start_at: beginning }}]
    batch: {{ linger: 20ms }}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/u.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        state = env.path("state").display(),
        cache = shared_cache().display(),
        dir = env.dir.path().display(),
        out = out.display(),
    );
    let config = env.write("gleaner.yaml", &text);
    let agent = start(&env, &config);
    env.wait_log("Serving the API", 1);
    let t = pipeline(port, "t");
    assert_eq!(t["processors"][0]["plugin"], "tagger@1.0.0", "{t}");
    assert_eq!(t["state"], "running");

    let stop_writing = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = crate::reload::paced_writer(
        vec![env.path("t.log"), env.path("u.log")],
        500,
        stop_writing.clone(),
        written.clone(),
    );
    let wait_written = |n: usize| {
        let target = written.load(Ordering::Relaxed) + n;
        wait_until("lines written", || {
            written.load(Ordering::Relaxed) >= target
        });
    };

    // 1.1.0 appears: `tagger` (newest) now means it; swapped in.
    wait_written(200);
    pack(&plugins, &add_fields, "1.1.0", Some(&version_config("2")));
    env.wait_log("Processors swapped at a batch boundary.", 1);
    wait_until("t on 1.1.0 past probation", || {
        let t = pipeline(port, "t");
        t["processors"][0]["plugin"] == "tagger@1.1.0" && t["state"] == "running"
    });

    // 2.0.0 fails on every batch: its failed batches go through 1.1.0,
    // and after the second failure (more than 20 % of 5) it is rolled back.
    wait_written(200);
    let fail = env.write("fail.yaml", "fail_on: seq\n");
    pack(
        &plugins,
        &plugin_wasm("test-misbehave"),
        "2.0.0",
        Some(&fail),
    );
    env.wait_log("rolled back to the previous ones", 1);
    let t = pipeline(port, "t");
    assert_eq!(t["state"], "rolled_back", "{t}");
    assert_eq!(t["processors"][0]["plugin"], "tagger@1.1.0", "{t}");
    assert_eq!(t["rollbacks"], 1);
    let rb = &t["last_rollback"];
    assert_eq!(
        (rb["batches_failed"].as_u64(), rb["batches_seen"].as_u64()),
        (Some(2), Some(2)),
        "{t}"
    );
    assert!(
        rb["error"]
            .as_str()
            .unwrap()
            .contains("tagger@2.0.0: plugin failed"),
        "{t}"
    );
    // A reload does not try it again while it is what `tagger` means.
    let (status, body) = api_call(port, "POST", "/api/v1/reload");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(
            r#"["t","held back: these processors were rolled back; the previous ones run"]"#
        ),
        "{body}"
    );

    // 3.0.0's component is not the one its manifest describes: refused,
    // and `tagger@3.0.0` named outright is a config error saying why.
    wait_written(100);
    let staging = env.path("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let bad = pack(&staging, &add_fields, "3.0.0", Some(&version_config("3")));
    std::fs::write(bad.join("plugin.wasm"), b"not the same bytes").unwrap();
    std::fs::rename(&bad, plugins.join("tagger-3.0.0")).unwrap();
    env.wait_log("Plugin bundle refused.", 1);
    let (_, body) = api_get(port, "/api/v1/plugins");
    let reg: Value = serde_json::from_str(&body).unwrap();
    let refused = reg["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{reg}");
    assert_eq!(refused[0]["id"], "tagger@3.0.0");
    assert!(
        refused[0]["reason"]
            .as_str()
            .unwrap()
            .contains("refusing the bundle"),
        "{reg}"
    );
    let ids: Vec<(&str, Vec<Value>)> = reg["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap(),
                b["used_by"].as_array().unwrap().clone(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("tagger@1.0.0", vec![]),
            ("tagger@1.1.0", vec![Value::from("t")]),
            ("tagger@2.0.0", vec![])
        ]
    );
    let pinned = env.write(
        "pinned.yaml",
        &text.replace("plugin: tagger }", "plugin: tagger@3.0.0 }"),
    );
    let out = gleaner()
        .args(["validate", "--config"])
        .arg(&pinned)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pipelines[0].processors[0].plugin: bundle `tagger@3.0.0` in")
            && err.contains("the manifest says"),
        "{err}"
    );

    // 3.1.0 does not compile: the reload fails, everything runs on.
    wait_written(100);
    let junk = env.write("junk.wasm", "not a component");
    pack(&plugins, &junk, "3.1.0", None);
    env.wait_log("Config not reloaded", 1);
    assert_eq!(
        pipeline(port, "t")["processors"][0]["plugin"],
        "tagger@1.1.0"
    );

    // 3.2.0 is good: swapped in.
    wait_written(100);
    pack(&plugins, &add_fields, "3.2.0", Some(&version_config("3")));
    wait_until("t on 3.2.0", || {
        pipeline(port, "t")["processors"][0]["plugin"] == "tagger@3.2.0"
    });
    wait_written(200);
    stop_writing.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let n = written.load(Ordering::Relaxed);
    for name in ["t", "u"] {
        wait_until(&format!("{name} complete"), || {
            lines_in(&env.path(&format!("out/{name}.ndjson"))).len() >= n
        });
    }
    // Progress: every byte of both files read and delivered.
    let size = std::fs::metadata(env.path("t.log")).unwrap().len();
    wait_until("checkpoints caught up", || {
        let p = &pipeline(port, "t")["inputs"][0]["progress"];
        p["bytes_total"] == size && p["checkpoint_lag_bytes"] == 0 && p["backlog_bytes"] == 0
    });
    let (_, metrics) = api_get(port, "/metrics");
    for line in [
        "gleaner_pipeline_swaps_total{pipeline=\"t\"} 3".to_owned(),
        "gleaner_pipeline_rollbacks_total{pipeline=\"t\"} 1".to_owned(),
        "gleaner_pipeline_swaps_total{pipeline=\"u\"} 0".to_owned(),
        "gleaner_input_checkpoint_lag_bytes{pipeline=\"t\",input=\"0\"} 0".to_owned(),
        "gleaner_pipeline_queue_batches{pipeline=\"t\",stage=\"processors\"} 0".to_owned(),
        "# TYPE gleaner_plugin_call_duration_seconds histogram".to_owned(),
        format!("gleaner_pipeline_events_delivered_total{{pipeline=\"u\"}} {n}"),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    // Only the version that runs now has series (one per place in the
    // chain: issue 14); retired generations' series are gone. The
    // histogram's count is the number of calls.
    let calls =
        "gleaner_plugin_calls_total{pipeline=\"t\",stage=\"processor0\",plugin=\"tagger@3.2.0\"} ";
    let count = "gleaner_plugin_call_duration_seconds_count{pipeline=\"t\",stage=\"processor0\",plugin=\"tagger@3.2.0\"} ";
    let value = |prefix: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{metrics}"))
            .to_owned()
    };
    assert_eq!(value(calls), value(count));
    assert_ne!(value(calls), "0");
    let t_calls: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("gleaner_plugin_calls_total{pipeline=\"t\","))
        .collect();
    assert_eq!(
        t_calls.len(),
        2,
        "processor0 and flusher0 only: {t_calls:?}"
    );
    for retired in ["tagger@1.0.0", "tagger@1.1.0", "tagger@2.0.0"] {
        assert!(!metrics.contains(retired), "{retired} still has series");
    }
    stop(agent);
    let log = env.log();

    // Every line once and in order in both pipelines; in t, each went
    // through exactly one version, in runs 1, 2, 3 (none through 2.0.0,
    // which marks what it passes with `seen_by`).
    for name in ["t", "u"] {
        let got: Vec<String> = lines_in(&env.path(&format!("out/{name}.ndjson")))
            .iter()
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect();
        let want: Vec<String> = (0..n).map(|i| format!("seq={i:08}")).collect();
        assert!(got == want, "{name}: {} lines, want {n}", got.len());
    }
    let events = lines_in(&env.path("out/t.ndjson"));
    assert!(events.iter().all(|e| e.get("seen_by").is_none()));
    let mut runs: Vec<String> = Vec::new();
    for e in &events {
        let v = e["version"].as_str().unwrap().to_owned();
        if runs.last() != Some(&v) {
            runs.push(v);
        }
    }
    assert_eq!(runs, ["1", "2", "3"]);
    let started = |p: &str| starts(&log, p);
    assert_eq!((started("t"), started("u")), (1, 1), "{log}");
    assert!(
        log.contains("New processors failed on a batch during probation"),
        "{log}"
    );
}
