//! The data path at full speed: several processor workers keep each file's
//! order and commit every offset; a tailer behind a full pipeline is woken
//! when a batch leaves it, not by its poll timer.

use crate::common::*;

/// A config of one pipeline reading `logs/{paths}` (with more input
/// options `input`) through `processors` into `out/e.ndjson`; `keys` are
/// more pipeline keys (YAML lines). Returns the config and the output.
fn into_file(
    env: &Env,
    keys: &str,
    (paths, input): (&str, &str),
    processors: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = env.config(&format!(
        r#"
  - name: p
{keys}
    inputs: [{{ type: file, paths: ["{logs}/{paths}"], start_at: beginning {input} }}]
    processors: {processors}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/e.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        logs = env.path("logs").display(),
        out = out.display()
    ));
    (config, out.join("e.ndjson"))
}

/// Lines `"{name} {n}"` for n in 0..count.
fn numbered(name: &str, count: usize) -> String {
    (0..count).map(|n| format!("{name} {n}\n")).collect()
}

#[test]
fn workers_keep_each_files_order_and_commit_every_offset() {
    let env = Env::new();
    let per_file = knob("GLEANER_WORKERS_LINES", 20_000);
    let names = ["alpha", "beta", "gamma"];
    for name in names {
        env.write(&format!("logs/{name}.log"), &numbered(name, per_file));
    }
    // Small batches, so the three workers take many batches each and
    // finish them out of order.
    let (config, output) = into_file(
        &env,
        "    workers: 3\n    batch: { max_events: 97 }",
        ("*.log", ""),
        "[{ plugin: builtin:parse-regex, config: { pattern: '^(?P<file>[a-z]+) (?P<n>[0-9]+)$' } }]",
    );
    let agent = start(&env, &config);
    let total = names.len() * per_file;
    wait_until("every line", || lines_in(&output).len() >= total);
    stop(agent);
    let events = lines_in(&output);
    assert_eq!(events.len(), total, "each line exactly once");
    for name in names {
        let ns: Vec<usize> = events
            .iter()
            .filter(|e| e["file"] == name)
            .map(|e| e["n"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(
            ns,
            (0..per_file).collect::<Vec<_>>(),
            "{name} in read order"
        );
    }
    let log = env.log();
    let summary = log
        .lines()
        .find(|l| l.contains("Plugin summary.") && l.contains("builtin:parse-regex"))
        .unwrap_or_else(|| panic!("no parse-regex summary: {log}"));
    assert!(
        summary.contains("instances=3"),
        "three workers, an instance each: {summary}"
    );
    // Every offset was committed: a restart from the checkpoints reads
    // nothing again.
    let cp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("state/checkpoints.json")).unwrap())
            .unwrap();
    let files = cp["files"].as_array().unwrap();
    assert_eq!(files.len(), names.len());
    for f in files {
        let path = f["path"].as_str().unwrap();
        let size = std::fs::metadata(path).unwrap().len();
        assert_eq!(f["offset"], size, "{path} committed to its end");
    }
}

#[test]
fn a_tailer_behind_a_full_pipeline_wakes_when_a_batch_leaves_it() {
    let env = Env::new();
    let lines = 5_000;
    env.write("logs/app.log", &numbered("app", lines));
    // 500 batches through a one-batch queue: the tailer finds the pipeline
    // full after nearly every batch. Waiting for its poll (10 s, at most
    // 0.5 s a wait before) instead of for room would take minutes.
    let (config, output) = into_file(
        &env,
        "    queue_batches: 1\n    batch: { max_events: 10 }",
        ("app.log", ", poll_interval: 10s"),
        "[]",
    );
    let agent = start(&env, &config);
    wait_until("every line", || lines_in(&output).len() >= lines);
    stop(agent);
    let events = lines_in(&output);
    let bodies: Vec<String> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, numbered("app", lines).lines().collect::<Vec<_>>());
}
