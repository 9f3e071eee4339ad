//! Bad configs are refused before anything starts, with the file, the key
//! path and what is wrong.

use crate::common::*;

fn refused(env: &Env, pipelines: &str) -> String {
    let config = env.config(pipelines);
    let out = gleaner()
        .args(["run", "--exit-on-eof", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "expected exit code 2");
    assert!(
        out.stdout.is_empty(),
        "nothing may run: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        stderr.contains(&config.display().to_string()),
        "error must name the file: {stderr}"
    );
    stderr
}

#[test]
fn unknown_key_names_file_and_key_path() {
    let env = Env::new();
    let err = refused(
        &env,
        r#"
  - name: a
    inputs: [{ type: file, paths: ["x.log"] }]
    flushers: [{ plugin: builtin:stdout, grants: { stdout: true }, limitz: {} }]
"#,
    );
    assert!(err.contains("pipelines[0].flushers[0]"), "{err}");
    assert!(err.contains("unknown field `limitz`"), "{err}");
}

#[test]
fn plugin_config_is_checked_by_the_plugin_at_start() {
    let env = Env::new();
    env.write("in.log", "a\n");
    let err = refused(
        &env,
        &format!(
            r#"
  - name: a
    inputs: [{{ type: file, paths: ["{}"], start_at: beginning }}]
    processors: [{{ plugin: builtin:parse-regex, config: {{ pattern: "(" }} }}]
    flushers: [{{ plugin: builtin:stdout, grants: {{ stdout: true }} }}]
"#,
            env.path("in.log").display()
        ),
    );
    assert!(err.contains("pipelines[0].processors[0] (builtin:parse-regex): plugin refused its config: pattern: invalid regex"), "{err}");
}

#[test]
fn a_flusher_used_as_a_processor_is_refused_as_the_wrong_kind() {
    let env = Env::new();
    let err = refused(
        &env,
        r#"
  - name: a
    inputs: [{ type: file, paths: ["x.log"] }]
    processors: [{ plugin: builtin:stdout }]
    flushers: [{ plugin: builtin:stdout, grants: { stdout: true } }]
"#,
    );
    assert!(
        err.contains("pipelines[0].processors[0] (builtin:stdout): plugin is not a processor"),
        "{err}"
    );
}

#[test]
fn a_plugin_file_that_is_not_a_component_is_refused() {
    let env = Env::new();
    let bogus = env.write("bogus.wasm", "not wasm at all");
    let err = refused(
        &env,
        &format!(
            r#"
  - name: a
    inputs: [{{ type: file, paths: ["x.log"] }}]
    processors: [{{ plugin: "{}" }}]
    flushers: [{{ plugin: builtin:stdout, grants: {{ stdout: true }} }}]
"#,
            bogus.display()
        ),
    );
    assert!(
        err.contains("pipelines[0].processors[0]") && err.contains("cannot load plugin"),
        "{err}"
    );
}

#[test]
fn a_refused_second_pipeline_starts_nothing_at_all() {
    let env = Env::new();
    env.write("in.log", "line\n");
    let out_dir = env.path("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let err = refused(
        &env,
        &format!(
            r#"
  - name: good
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/good.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
  - name: bad
    inputs: [{{ type: file, paths: ["{log}"] }}]
    processors: [{{ plugin: "{misbehave}", config: {{ refuse_init: "no thanks" }} }}]
    flushers: [{{ plugin: builtin:stdout, grants: {{ stdout: true }} }}]
"#,
            log = env.path("in.log").display(),
            out = out_dir.display(),
            misbehave = plugin_wasm("test-misbehave").display(),
        ),
    );
    assert!(
        err.contains("pipelines[1].processors[0]") && err.contains("no thanks"),
        "{err}"
    );
    // The first pipeline's flusher was initialised (it opens its file), but
    // no pipeline ran: nothing was read or written.
    assert_eq!(lines_in(&out_dir.join("good.ndjson")).len(), 0);
}
