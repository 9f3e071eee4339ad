//! The README's quickstart, and every example config, work as documented.

use crate::common::*;

#[test]
fn quickstart_prints_every_sample_line_as_parsed_json() {
    // A copy of configs/, so the checkpoints of an earlier run do not apply.
    let env = Env::new();
    copy_configs(&env, &["quickstart.yaml", "sample/nginx-access.log"]);
    let config = env.path("configs/quickstart.yaml");
    let out = run_once(&config);
    let events = json_lines(&out.stdout);
    let sample =
        std::fs::read_to_string(workspace().join("configs/sample/nginx-access.log")).unwrap();
    let lines: Vec<&str> = sample.lines().collect();
    assert_eq!(events.len(), lines.len());
    for (event, line) in events.iter().zip(&lines) {
        assert_eq!(event["message"], *line);
        assert!(
            event["source.path"]
                .as_str()
                .unwrap()
                .ends_with("configs/sample/nginx-access.log")
        );
    }
    let first = &events[0];
    // Run again: everything was delivered and checkpointed, nothing is new.
    let again = run_once(&config);
    assert!(
        again.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(first["remote_addr"], "10.0.0.26");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/");
    // Typed by `types:`: numbers, not text.
    assert_eq!(first["status"], 200);
    assert_eq!(first["body_bytes_sent"], 1186);
    assert_eq!(first["http_user_agent"], "curl/8.5.0");
    // The time of the request, from the line (parse-time), not of reading.
    assert_eq!(first["timestamp"], "2026-11-21T17:00:00.000000000Z");
    // The plugin's own counters (host.counter-add) are reported.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(r#"plugin="builtin:parse-regex" calls=1"#),
        "{log}"
    );
    assert!(log.contains(r#"counters={"matched": 200}"#), "{log}");
}

#[test]
fn the_configuration_block_in_the_readme_validates() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let block = readme
        .split("```yaml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let env = Env::new();
    // Keep its state out of /var/lib on the test machine.
    let block = block.replace(
        "data_dir: /var/lib/gleaner",
        &format!("data_dir: {}", env.path("state").display()),
    );
    let config = env.write("readme.yaml", &block);
    let out = gleaner()
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_example_config_validates() {
    let mut checked = 0;
    for entry in std::fs::read_dir(workspace().join("configs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            // The secrets the examples read from the environment.
            let out = gleaner()
                .args(["validate", "--config"])
                .arg(&path)
                .env("ES_API_KEY", "example-key")
                .env("LOKI_TENANT", "team-a")
                .env("NODE_NAME", "node-1")
                .env("HEC_TOKEN", "example-token")
                .env("CLICKHOUSE_PASSWORD", "example")
                .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
                .env("AWS_SECRET_ACCESS_KEY", "example-secret")
                .env("KAFKA_PASSWORD", "example-password")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} does not validate: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 3,
        "expected the example configs, found {checked}"
    );
}

#[test]
fn redact_and_archive_example_masks_groups_and_filters() {
    // Run a copy of configs/ so this test owns its output directory.
    let env = Env::new();
    copy_configs(&env, &["redact-and-archive.yaml", "sample/app.log"]);
    run_once(&env.path("configs/redact-and-archive.yaml"));
    let events = lines_in(&env.path("target/archive/app.ndjson"));
    let levels: Vec<&str> = events
        .iter()
        .map(|e| e["level"].as_str().unwrap())
        .collect();
    assert_eq!(levels, vec!["INFO", "ERROR", "INFO"], "DEBUG is dropped");
    assert!(
        events[0]["message"]
            .as_str()
            .unwrap()
            .ends_with("placed by ***@example.com")
    );
    let error = events[1]["message"].as_str().unwrap();
    assert!(
        error.contains("card **** **** **** 1111\njava.lang.IllegalStateException"),
        "{error}"
    );
    assert!(
        error.ends_with("at com.example.Checkout.pay(Checkout.java:17)"),
        "{error}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["service"] == "checkout" && e["env"] == "demo")
    );
}

/// Copies files from `configs/` into `env`'s `configs/` (same layout), so a
/// test owns the state and output its run creates.
fn copy_configs(env: &Env, files: &[&str]) {
    for f in files {
        let to = env.path("configs").join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(workspace().join("configs").join(f), to).unwrap();
    }
}
