//! Working on a running agent through its API: `gleaner tap` shows exactly
//! the events passing a stage, without touching delivery, and closes when
//! its client goes; `gleaner dead-letter replay` sends dead letters back to
//! the stage that gave them up, once each, and empties the file.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

use serde_json::Value;

use crate::common::*;
use crate::delivery::http_flusher;
use crate::http_sink::Sink;
use crate::kubernetes::{api_get, free_port};

/// Waits for the agent's API on `port`.
fn wait_api(port: u16) {
    wait_until("the API answers", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// `gleaner tap` started, returned once the agent has opened its tap.
fn tap(port: u16, args: &[&str]) -> Child {
    let mut child = gleaner()
        .arg("tap")
        .args(args)
        .args(["--api", &format!("127.0.0.1:{port}"), "--rate", "10000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("Tapping pipeline=web; stage="), "{line}");
    // The rest of stderr is read at exit.
    child.stderr = None;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut err, &mut std::io::sink());
    });
    child
}

/// What a finished tap printed: each event's message and fields.
fn tapped(child: Child) -> Vec<(String, Value)> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    json_lines(&out.stdout)
        .into_iter()
        .map(|e| {
            (
                e["message"].as_str().unwrap().to_owned(),
                e["fields"].clone(),
            )
        })
        .collect()
}

fn messages(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(m, _)| m.as_str()).collect()
}

#[test]
fn tap_shows_exactly_the_events_passing_each_stage() {
    let env = Env::new();
    env.write("in.log", "");
    let port = free_port();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = env.config_with(
        &format!("api: {{ address: \"127.0.0.1:{port}\" }}"),
        &format!(
            r#"
  - name: web
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors:
      - {{ plugin: builtin:filter, config: {{ exclude: [{{ regex: "^skip" }}] }} }}
      - {{ plugin: builtin:add-fields, config: {{ fields: {{ tapped: "yes" }} }} }}
    flushers:
      - {{ plugin: builtin:file, config: {{ path: "{out}/a.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}
      - {{ plugin: builtin:file, config: {{ path: "{out}/b.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}
"#,
            log = env.path("in.log").display(),
            out = out.display()
        ),
    );
    let mut agent = Reaper(Some(start(&env, &config)));
    wait_api(port);
    let input = tap(port, &["web", "--limit", "10"]);
    let filtered = tap(port, &["web", "--stage", "processor:0", "--limit", "5"]);
    let added = tap(
        port,
        &[
            "web",
            "--stage",
            "processor:builtin:add-fields",
            "--limit",
            "5",
        ],
    );
    let second = tap(port, &["web", "--stage", "flusher:1", "--limit", "5"]);
    let (_, pipelines) = api_get(port, "/api/v1/pipelines");
    assert!(pipelines.contains("\"taps\":4"), "{pipelines}");
    let lines: String = (0..10)
        .map(|i| {
            if i % 2 == 0 {
                format!("keep {i}\n")
            } else {
                format!("skip {i}\n")
            }
        })
        .collect();
    env.append("in.log", &lines);
    let all: Vec<String> = lines.lines().map(str::to_owned).collect();
    let kept = ["keep 0", "keep 2", "keep 4", "keep 6", "keep 8"];
    let input = tapped(input);
    assert_eq!(messages(&input), all);
    assert!(input.iter().all(|(_, f)| f.get("tapped").is_none()));
    let filtered = tapped(filtered);
    assert_eq!(messages(&filtered), kept);
    assert!(filtered.iter().all(|(_, f)| f.get("tapped").is_none()));
    for after in [tapped(added), tapped(second)] {
        assert_eq!(messages(&after), kept);
        assert!(after.iter().all(|(_, f)| f["tapped"] == "yes"), "{after:?}");
    }
    // Delivery did not notice. (A flusher's tap sees a batch as it is
    // handed over, before it is written: wait for the files.)
    for f in ["a", "b"] {
        let path = out.join(format!("{f}.ndjson"));
        wait_until("the kept lines delivered", || {
            lines_in(&path).len() >= kept.len()
        });
        let got = lines_in(&path);
        let got: Vec<&str> = got.iter().map(|e| e["message"].as_str().unwrap()).collect();
        assert_eq!(got, kept);
    }
    // A client that goes closes its tap.
    let mut gone = tap(port, &["web", "--limit", "1000"]);
    gone.kill().unwrap();
    gone.wait().unwrap();
    let mut n = 0;
    wait_until("the tap of a client that left closes", || {
        n += 1;
        env.append("in.log", &format!("keep late {n}\n"));
        std::thread::sleep(std::time::Duration::from_millis(50));
        api_get(port, "/api/v1/pipelines").1.contains("\"taps\":0")
    });
    // Clear errors: no such pipeline, no such stage.
    let refused = |args: &[&str]| -> String {
        let o = gleaner()
            .arg("tap")
            .args(args)
            .args(["--api", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(refused(&["nope"]).contains("answered 404: no pipeline `nope` runs"));
    let e = refused(&["web", "--stage", "flusher:7"]);
    assert!(
        e.contains(
            "no stage `flusher:7`: there are 2 of them; the stages are input, \
             processor:0 (builtin:filter), processor:1 (builtin:add-fields), \
             flusher:0 (builtin:file), flusher:1 (builtin:file)"
        ),
        "{e}"
    );
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
}

#[test]
fn dead_letter_replay_sends_each_event_back_to_its_stage_once() {
    let env = Env::new();
    let text: String = (0..20)
        .map(|i| {
            if i == 7 {
                "trigger 7\n".to_owned()
            } else {
                format!("line {i}\n")
            }
        })
        .collect();
    env.write("in.log", &text);
    let port = free_port();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    // The destination refuses the first three events for good (400).
    let sink = Sink::start(&[400, 400, 400]);
    let write_config = |panic_on: &str| {
        env.config_with(
            &format!("api: {{ address: \"127.0.0.1:{port}\" }}"),
            &format!(
                r#"
  - name: web
    workers: 1
    batch: {{ max_events: 1 }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors:
      - plugin: "{misbehave}"
        config: {{ panic_on: {panic_on} }}
        on_error: {{ retries: 0, backoff: 10ms, then: dead_letter }}
      - {{ plugin: builtin:add-fields, config: {{ fields: {{ seen: "yes" }} }} }}
    flushers:
      - {{ plugin: builtin:file, config: {{ path: "{out}/a.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}
{http}
"#,
                log = env.path("in.log").display(),
                misbehave = plugin_wasm("test-misbehave").display(),
                out = out.display(),
                // Given up on (400: not retried) into the dead letters,
                // the default.
                http = http_flusher(&sink),
            ),
        )
    };
    let config = write_config("trigger");
    let mut agent = Reaper(Some(start(&env, &config)));
    let a = out.join("a.ndjson");
    let dead = env.path("state/dead-letter/web.ndjson");
    wait_until("19 delivered to the file, 4 dead letters", || {
        lines_in(&a).len() == 19 && dead.exists() && lines_in(&dead).len() == 4
    });
    wait_until("16 delivered to the destination", || {
        sink.events().len() == 16
    });
    let records = lines_in(&dead);
    let at = |stage: &str| -> Vec<&str> {
        records
            .iter()
            .filter(|r| r["stage"] == stage)
            .map(|r| r["message"].as_str().unwrap())
            .collect()
    };
    assert_eq!(at("flusher:1"), ["line 0", "line 1", "line 2"]);
    assert_eq!(at("processor:0"), ["trigger 7"]);
    let replay = |args: &[&str]| -> String {
        let o = gleaner()
            .args([
                "dead-letter",
                "replay",
                "web",
                "--api",
                &format!("127.0.0.1:{port}"),
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // A range with nothing in it takes nothing.
    let none = replay(&["--until", "2000-01-01T00:00:00Z"]);
    assert!(
        none.contains("No dead letters of `web` to send back (4 in the file did not match)"),
        "{none}"
    );
    // The cause is fixed (the processor no longer fails), then the replay.
    write_config("never-in-these-lines");
    signal(agent.child(), libc::SIGHUP);
    env.wait_log("Config reloaded.", 1);
    let done = replay(&["--since", "1h"]);
    assert!(
        done.contains("Sent 4 dead letters back through `web`"),
        "{done}"
    );
    // Once each: the file flusher got only the processor's dead letter,
    // the destination got its three and that one; nothing twice.
    let file: Vec<String> = lines_in(&a)
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(file.len(), 20);
    assert_eq!(file.last().map(String::as_str), Some("trigger 7"));
    let mut sent: Vec<String> = sink
        .events()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent.len(), 20);
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), 20, "each event once");
    let replayed = lines_in(&a).pop().unwrap();
    assert_eq!(
        replayed["seen"], "yes",
        "it went through the processors after the one that failed"
    );
    assert_eq!(std::fs::read_to_string(&dead).unwrap(), "");
    assert!(!env.path("state/dead-letter/web.replay.ndjson").exists());
    let (_, metrics) = api_get(port, "/metrics");
    assert_eq!(
        sample(
            &metrics,
            "gleaner_pipeline_events_resent_total{pipeline=\"web\"}"
        ),
        Some(4.0)
    );
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
}

/// A replay cut by a stop (the destination down, the queues full) goes on
/// after the restart: what was queued comes back from the disk buffer,
/// the rest from the replay file, and the destination gets each event once.
#[test]
fn a_replay_cut_by_a_stop_goes_on_after_the_restart_once_each() {
    const N: usize = 40;
    let env = Env::new();
    let text: String = (0..N).map(|i| format!("line {i}\n")).collect();
    env.write("in.log", &text);
    let port = free_port();
    let sink = Sink::start(&[400; N]);
    let config = env.config_with(
        &format!("api: {{ address: \"127.0.0.1:{port}\" }}\nshutdown_timeout: 1s"),
        &format!(
            r#"
  - name: web
    workers: 1
    queue_batches: 1
    batch: {{ max_events: 1 }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    flushers:
{http}
"#,
            log = env.path("in.log").display(),
            http = http_flusher(&sink),
        ),
    );
    let mut agent = Reaper(Some(start(&env, &config)));
    let dead = env.path("state/dead-letter/web.ndjson");
    wait_until("every event refused and dead-lettered", || {
        dead.exists() && lines_in(&dead).len() == N
    });
    sink.state.lock().unwrap().down = true;
    let o = gleaner()
        .args(["dead-letter", "replay", "web", "--no-wait"])
        .args(["--api", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let resent = || {
        sample(
            &api_get(port, "/metrics").1,
            "gleaner_pipeline_events_resent_total{pipeline=\"web\"}",
        )
        .unwrap_or(0.0)
    };
    // The destination is down: the queues fill and the replay waits.
    wait_until("the replay's queue is full", || resent() >= 2.0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(resent() < N as f64, "{}", resent());
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
    let replay = env.path("state/dead-letter/web.replay.ndjson");
    assert!(replay.exists(), "the rest waits in the replay file");
    assert!(sink.events().is_empty());
    sink.state.lock().unwrap().down = false;
    let mut agent = Reaper(Some(start(&env, &config)));
    wait_until("every event delivered after the restart", || {
        sink.events().len() >= N
    });
    let mut got: Vec<String> = sink
        .events()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    let mut want: Vec<String> = text.lines().map(str::to_owned).collect();
    want.sort();
    assert_eq!(got, want, "each event once");
    wait_until("the replay file is gone", || !replay.exists());
    assert_eq!(std::fs::read_to_string(&dead).unwrap(), "");
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
    assert_eq!(sink.events().len(), N, "nothing more after the restart");
}
