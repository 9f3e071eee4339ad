//! Every first-party processor, end to end through the runtime.

use crate::common::*;

/// Runs one pipeline over `lines` with `processors` (a YAML list) and the
/// file flusher; returns the events written.
fn through(processors: &str, lines: &[&str]) -> Vec<serde_json::Value> {
    let env = Env::new();
    env.write("in.log", &(lines.join("\n") + "\n"));
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = env.config(&format!(
        r#"
  - name: p
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: {processors}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        log = env.path("in.log").display(),
        out = out.display()
    ));
    run_once(&config);
    lines_in(&out.join("events.ndjson"))
}

#[test]
fn regex_filter_mask_and_add_fields_chain_in_order() {
    let lines = [
        r#"10.0.0.1 - - [21/Nov/2026:17:00:00 +0000] "GET /healthz HTTP/1.1" 200 2 "-" "kube-probe/1.30""#,
        r#"10.0.0.2 - - [21/Nov/2026:17:00:01 +0000] "POST /pay?card=4111-1111-1111-1111 HTTP/1.1" 502 0 "-" "curl/8""#,
        r#"10.0.0.3 - - [21/Nov/2026:17:00:02 +0000] "GET /u?mail=ann@example.com HTTP/1.1" 404 10 "-" "curl/8""#,
        "garbage that matches nothing",
    ];
    let events = through(
        r#"
      - plugin: builtin:parse-regex
        config: { pattern: '^(?P<ip>\S+) .*"(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d{3})' }
      - plugin: builtin:filter
        config: { exclude: [ { field: path, regex: '^/healthz' } ] }
      - plugin: builtin:mask
        config: { presets: [card, email], fields: [path] }
      - plugin: builtin:add-fields
        config: { fields: { env: prod } }"#,
        &lines,
    );
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["status"], "502");
    assert_eq!(events[0]["path"], "/pay?card=****-****-****-1111");
    assert!(
        events[0]["message"]
            .as_str()
            .unwrap()
            .contains("card=****-****-****-1111 HTTP")
    );
    assert_eq!(events[1]["path"], "/u?mail=***@example.com");
    assert_eq!(events[2]["message"], "garbage that matches nothing");
    assert!(events[2].get("status").is_none());
    assert!(events.iter().all(|e| e["env"] == "prod"));
}

#[test]
fn json_bodies_become_flattened_typed_fields() {
    let events = through(
        "[ { plugin: builtin:parse-json } ]",
        &[r#"{"level":"info","req":{"id":7,"ok":true}}"#, "plain text"],
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["level"], "info");
    assert_eq!(events[0]["req.id"], 7);
    assert_eq!(events[0]["req.ok"], true);
    assert_eq!(events[1]["message"], "plain text");
    assert_eq!(events[1].as_object().unwrap().len(), 3);
}

#[test]
fn delimited_bodies_become_named_columns() {
    let events = through(
        r#"[ { plugin: builtin:parse-delimiter, config: { fields: [ts, level, msg], delimiter: ";" } } ]"#,
        &[r#"2026-11-21;WARN;"disk; 91% full""#],
    );
    assert_eq!(events[0]["ts"], "2026-11-21");
    assert_eq!(events[0]["level"], "WARN");
    assert_eq!(events[0]["msg"], "disk; 91% full");
}

#[test]
fn compiled_plugins_are_cached_on_disk_and_reused() {
    let env = Env::new();
    env.write("in.log", "a\n");
    let out = env.path("out");
    // Its own cache directory (the shared test cache is warm already).
    let text = format!(
        r#"data_dir: {state}
pipelines:
  - name: c
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors: [{{ plugin: builtin:add-fields, config: {{ fields: {{ k: v }} }} }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/e.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        state = env.path("state").display(),
        log = env.path("in.log").display(),
        out = out.display()
    );
    let config = env.write("cache.yaml", &text);
    let first = String::from_utf8_lossy(&run_once(&config).stderr).into_owned();
    assert_eq!(
        first.matches("Compiled plugin component.").count(),
        2,
        "{first}"
    );
    let cached: Vec<_> = std::fs::read_dir(env.path("state/plugin-cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 2);
    assert!(
        cached
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "cwasm"))
    );
    let second = String::from_utf8_lossy(&run_once(&config).stderr).into_owned();
    assert_eq!(
        second.matches("Compiled plugin component.").count(),
        0,
        "{second}"
    );
    assert_eq!(
        lines_in(&out.join("e.ndjson")).len(),
        1,
        "the second run resumes from the checkpoint"
    );
}

#[test]
fn parse_time_sets_the_event_time_from_the_line() {
    let lines = [
        r#"10.0.0.1 - - [21/Nov/2024:17:01:02 +0100] "GET / HTTP/1.1" 200 2 "-" "curl/8""#,
        r#"10.0.0.2 - - [31/Dec/2023:23:59:59 -0500] "GET / HTTP/1.1" 200 2 "-" "curl/8""#,
        r#"10.0.0.3 - - [99/Foo/2024:17:01:02 +0100] "GET / HTTP/1.1" 200 2 "-" "curl/8""#,
        "not an access log line",
    ];
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let mut started_text = Vec::new();
    gleaner_sdk::json::write_rfc3339(started, &mut started_text);
    let started_text = String::from_utf8(started_text).unwrap();
    let events = through(
        r#"[ { plugin: builtin:parse-regex, config: { pattern: '^\S+ \S+ \S+ \[(?P<time_local>[^\]]+)\]' } },
            { plugin: builtin:parse-time, config: { field: time_local, format: "%d/%b/%Y:%H:%M:%S %z", remove: true } } ]"#,
        &lines,
    );
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["timestamp"], "2024-11-21T16:01:02.000000000Z");
    assert_eq!(events[1]["timestamp"], "2024-01-01T04:59:59.000000000Z");
    assert!(events[0].get("time_local").is_none(), "removed once parsed");
    // A value that does not parse keeps the read time and its field.
    assert_eq!(events[2]["time_local"], "99/Foo/2024:17:01:02 +0100");
    for e in &events[2..] {
        let read_at = e["timestamp"].as_str().unwrap();
        assert!(
            read_at >= started_text.as_str(),
            "read time kept: {read_at}"
        );
    }
}
