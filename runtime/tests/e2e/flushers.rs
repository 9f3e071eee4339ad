//! The `http` and `file` flushers end to end, with the grant checks.

use crate::common::*;
use crate::http_sink::Sink;

fn http_pipeline(
    env: &Env,
    lines: usize,
    url: &str,
    grant: &str,
    extra: &str,
) -> std::path::PathBuf {
    let text: String = (0..lines).map(|i| format!("line {i}\n")).collect();
    env.write("in.log", &text);
    env.config(&format!(
        r#"
  - name: web
    batch: {{ max_events: 500, linger: 50ms }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    flushers:
      - plugin: builtin:http
        config: {{ url: "{url}" {extra} }}
        grants: {{ hosts: ["{grant}"] }}
        on_error: {{ retries: 5, backoff: 20ms }}
"#,
        log = env.path("in.log").display()
    ))
}

#[test]
fn http_flusher_posts_zstd_ndjson_over_one_pooled_connection() {
    let sink = Sink::start(&[]);
    let env = Env::new();
    let url = format!("http://{}/ingest", sink.addr);
    let config = http_pipeline(
        &env,
        3000,
        &url,
        &sink.addr.to_string(),
        ", compression: zstd",
    );
    run_once(&config);
    let events = sink.events();
    assert_eq!(events.len(), 3000);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["message"], format!("line {i}"));
    }
    let s = sink.state.lock().unwrap();
    assert_eq!(s.requests.len(), 6, "3000 events in batches of 500");
    assert!(
        s.requests
            .iter()
            .all(|r| r.encoding.as_deref() == Some("zstd"))
    );
    assert!(
        s.requests
            .iter()
            .all(|r| r.content_type.as_deref() == Some("application/x-ndjson"))
    );
    assert!(s.requests.iter().all(|r| r.path == "/ingest"));
    assert_eq!(
        s.connections, 1,
        "requests must reuse one pooled connection"
    );
}

#[test]
fn http_flusher_retries_server_errors_and_delivers_each_event_once() {
    let sink = Sink::start(&[503, 500, 429]);
    let env = Env::new();
    let url = format!("http://{}/", sink.addr);
    let config = http_pipeline(
        &env,
        700,
        &url,
        &sink.addr.to_string(),
        ", compression: gzip",
    );
    let out = run_once(&config);
    let events = sink.events();
    assert_eq!(events.len(), 700);
    let mut seen: Vec<String> = events
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 700, "no duplicates");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("Flush failed; retrying.").count(), 3, "{log}");
}

#[test]
fn http_flusher_to_a_destination_it_was_not_granted_is_refused_before_anything_runs() {
    let sink = Sink::start(&[]);
    let env = Env::new();
    let url = format!("http://{}/", sink.addr);
    let config = http_pipeline(&env, 10, &url, "127.0.0.1:1", "");
    let err = run_refused(&config);
    assert!(
        err.contains(&format!(
            "pipelines[0].flushers[0].config.url: `{url}` reaches {}, which is not in grants.hosts",
            sink.addr
        )),
        "{err}"
    );
    assert_eq!(
        sink.state.lock().unwrap().connections,
        0,
        "no connection may be opened"
    );
    // (A request to an ungranted destination that a flusher builds at
    // run time is denied by the host before connecting: the unit test
    // `a_request_to_an_ungranted_destination_is_denied_without_connecting`.)
}

#[test]
fn file_flusher_writes_only_inside_its_granted_directory() {
    let env = Env::new();
    env.write("in.log", "a\nb\n");
    let granted = env.path("granted");
    let other = env.path("other");
    std::fs::create_dir_all(&granted).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    let pipeline = |target: &std::path::Path| {
        format!(
            r#"
  - name: f
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{target}" }}, grants: {{ dirs: ["{granted}"] }} }}]
"#,
            log = env.path("in.log").display(),
            target = target.display(),
            granted = granted.display()
        )
    };
    let config = env.config(&pipeline(&other.join("x.ndjson")));
    let out = gleaner()
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "pipelines[0].flushers[0] (builtin:file): plugin refused its config: path: cannot open"
        ),
        "{err}"
    );
    assert!(!other.join("x.ndjson").exists());

    let config = env.config(&pipeline(&granted.join("x.ndjson")));
    run_once(&config);
    let events = lines_in(&granted.join("x.ndjson"));
    assert_eq!(
        events
            .iter()
            .map(|e| e["message"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["a", "b"]
    );
}

#[test]
fn secrets_come_from_the_environment_and_files_and_never_reach_the_log() {
    let sink = Sink::start(&[]);
    let env = Env::new();
    let token = "tok-7f3a9c1e5b";
    let key = env.write("secrets/api-key", "key-from-a-mounted-secret\n");
    let url = format!("http://{}/ingest", sink.addr);
    let headers = format!(
        r#", headers: {{ Authorization: "Bearer ${{GLEANER_E2E_TOKEN}}", X-Api-Key: "${{file:{}}}" }}"#,
        key.display()
    );
    let config = http_pipeline(&env, 10, &url, &sink.addr.to_string(), &headers);
    let out = gleaner()
        .args(["run", "--exit-on-eof", "--config"])
        .arg(&config)
        .env("GLEANER_E2E_TOKEN", token)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sink.events().len(), 10);
    let s = sink.state.lock().unwrap();
    for r in &s.requests {
        assert_eq!(
            r.credentials,
            (
                Some(format!("Bearer {token}")),
                Some("key-from-a-mounted-secret".to_owned())
            )
        );
    }
    drop(s);

    // A plugin that refuses a value quotes it in its error: the resolved
    // secret is hidden there too.
    let config = http_pipeline(
        &env,
        1,
        &url,
        &sink.addr.to_string(),
        ", compression: \"${GLEANER_E2E_TOKEN}\"",
    );
    let out = gleaner()
        .args(["validate", "--config"])
        .arg(&config)
        .env("GLEANER_E2E_TOKEN", token)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown variant `<redacted>`"), "{err}");
    assert!(!err.contains(token), "{err}");

    // An unset name without a default: refused, naming the key, and
    // nothing is created.
    let env = Env::new();
    let config = http_pipeline(
        &env,
        1,
        &url,
        &sink.addr.to_string(),
        ", headers: { Authorization: \"Bearer ${GLEANER_E2E_UNSET}\" }",
    );
    let err = run_refused(&config);
    assert!(
        err.contains("pipelines[0].flushers[0].config.headers.Authorization")
            && err.contains("environment variable GLEANER_E2E_UNSET is not set"),
        "{err}"
    );
    assert!(!env.path("state").exists(), "nothing created");
}
