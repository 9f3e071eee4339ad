//! A plugin that panics, loops or eats memory hurts only its own batches:
//! the instance is rebuilt, the batch retried and then dead-lettered (and
//! counted), and every other pipeline delivers everything.

use crate::common::*;

/// Two pipelines over the same lines: `bad` runs the misbehaving plugin
/// with `behaviour`, `good` runs a plain one. Lines go one batch each,
/// through one worker (so the count of rebuilds is exact).
fn two_pipelines(env: &Env, behaviour: &str, limits: &str, then: &str) -> std::path::PathBuf {
    let text: String = (0..20)
        .map(|i| {
            if i == 7 {
                "trigger line\n".to_owned()
            } else {
                format!("line {i}\n")
            }
        })
        .collect();
    env.write("in.log", &text);
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let pipeline = |name: &str, processors: &str| {
        format!(
            r#"
  - name: {name}
    workers: 1
    batch: {{ max_events: 1 }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: {processors}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/{name}.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
            log = env.path("in.log").display(),
            out = out.display()
        )
    };
    let bad = format!(
        r#"[ {{ plugin: "{}", config: {{ {behaviour}: trigger }}, limits: {{ {limits} }}, on_error: {{ retries: 2, backoff: 10ms, then: {then} }} }} ]"#,
        plugin_wasm("test-misbehave").display()
    );
    let text = pipeline("bad", &bad)
        + &pipeline(
            "good",
            "[ { plugin: builtin:add-fields, config: { fields: { ok: yes } } } ]",
        );
    env.config(&text)
}

fn check(env: &Env, reason: &str) {
    let good = lines_in(&env.path("out/good.ndjson"));
    assert_eq!(good.len(), 20, "the other pipeline delivers everything");
    let bad = lines_in(&env.path("out/bad.ndjson"));
    assert_eq!(
        bad.len(),
        19,
        "every other batch of the faulty pipeline is delivered"
    );
    assert!(bad.iter().all(|e| e["seen_by"] == "misbehave"));
    assert!(bad.iter().all(|e| e["message"] != "trigger line"));
    let dead = lines_in(&env.path("state/dead-letter/bad.ndjson"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["message"], "trigger line");
    let why = dead[0]["reason"].as_str().unwrap();
    assert!(
        why.contains(reason),
        "reason `{why}` should mention `{reason}`"
    );
}

#[test]
fn a_panicking_plugin_is_rebuilt_and_its_batch_dead_lettered() {
    let env = Env::new();
    let config = two_pipelines(&env, "panic_on", "", "dead_letter");
    let out = run_once(&config);
    check(&env, "plugin trapped");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("Plugin trapped; its instance will be rebuilt.")
            .count(),
        3,
        "first try + 2 retries"
    );
    assert!(log.contains("events_dead_lettered=1"), "{log}");
    // Its log lines reach the host's log, tagged with pipeline and plugin;
    // init ran once at start (one worker) and once per rebuild.
    let ready: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("misbehave ready"))
        .collect();
    assert_eq!(ready.len(), 4, "{log}");
    assert!(
        ready[0].contains("pipeline=\"bad\"") || ready[0].contains("pipeline=bad"),
        "{}",
        ready[0]
    );
}

#[test]
fn a_looping_plugin_is_stopped_at_its_deadline() {
    let env = Env::new();
    let config = two_pipelines(&env, "spin_on", "call_timeout: 200ms", "dead_letter");
    run_once(&config);
    check(&env, "deadline of 200ms");
}

#[test]
fn a_plugin_that_eats_memory_hits_its_cap() {
    let env = Env::new();
    let config = two_pipelines(&env, "hog_on", "memory_mib: 32", "dead_letter");
    run_once(&config);
    check(&env, "plugin trapped");
}

#[test]
fn a_kernel_called_with_a_bad_column_traps_with_the_reason() {
    let env = Env::new();
    let config = two_pipelines(&env, "bad_column_on", "", "dead_letter");
    run_once(&config);
    check(
        &env,
        "kernels.find-all: body-ends[1] = 1 is out of order or beyond the 3 bytes of bodies",
    );
}

#[test]
fn a_plugin_may_hold_at_most_256_host_regexes() {
    let env = Env::new();
    let config = two_pipelines(&env, "regexes_on", "", "dead_letter");
    run_once(&config);
    check(&env, "too many regexes: a plugin may hold 256 at once");
}

#[test]
fn skip_policy_passes_a_failed_batch_on_unprocessed() {
    let env = Env::new();
    let config = two_pipelines(&env, "fail_on", "", "skip");
    let out = run_once(&config);
    let bad = lines_in(&env.path("out/bad.ndjson"));
    assert_eq!(bad.len(), 20);
    let trigger: Vec<_> = bad
        .iter()
        .filter(|e| e["message"] == "trigger line")
        .collect();
    assert_eq!(trigger.len(), 1);
    assert!(
        trigger[0].get("seen_by").is_none(),
        "skipped batch is unprocessed"
    );
    assert!(!env.path("state/dead-letter/bad.ndjson").exists());
    // A returned error is not retried: it would fail the same way.
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .matches("retrying the batch")
            .count(),
        0
    );
}

#[test]
fn a_processor_cannot_read_host_files() {
    let env = Env::new();
    let secret = env.write("secret.txt", "do not read");
    env.write("in.log", "x\n");
    let out = env.path("out");
    let config = env.config(&format!(
        r#"
  - name: probe
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: [{{ plugin: "{misbehave}", config: {{ probe_file: "{secret}" }} }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/e.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        log = env.path("in.log").display(),
        misbehave = plugin_wasm("test-misbehave").display(),
        secret = secret.display(),
        out = out.display()
    ));
    run_once(&config);
    let events = lines_in(&out.join("e.ndjson"));
    assert_eq!(events.len(), 1);
    let probe = events[0]["fs_probe"].as_str().unwrap();
    assert!(
        probe.starts_with("denied:"),
        "the sandbox let the plugin read a host file: {probe}"
    );
}
