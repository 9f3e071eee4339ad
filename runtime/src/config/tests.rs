use super::*;

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    parse(Path::new("/etc/gleaner/test.yaml"), text)
}

const MINIMAL: &str = r#"
data_dir: state
pipelines:
  - name: web
    inputs:
      - type: file
        paths: ["logs/*.log"]
    processors:
      - plugin: builtin:parse-regex
        config: { pattern: '^(?P<ip>\S+)' }
    flushers:
      - plugin: builtin:stdout
        grants: { stdout: true }
"#;

#[test]
fn relative_paths_resolve_against_the_config_file() {
    let c = parse_str(MINIMAL).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/etc/gleaner/state"));
    assert_eq!(
        c.plugin_cache_dir,
        PathBuf::from("/etc/gleaner/state/plugin-cache")
    );
    assert_eq!(
        c.pipelines[0].inputs[0].read.include,
        vec!["/etc/gleaner/logs/*.log".to_string()]
    );
    assert_eq!(c.pipelines[0].inputs[0].read.start_at, StartAt::End);
    assert_eq!(
        c.pipelines[0].processors[0].spec.config_json,
        r#"{"pattern":"^(?P<ip>\\S+)"}"#
    );
    assert_eq!(c.pipelines[0].flushers[0].key, "pipelines[0].flushers[0]");
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    let text = MINIMAL.replace("    flushers:", "    flusherz: []\n    flushers:");
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "pipelines[0].flusherz");
    assert!(
        e.message
            .starts_with("unknown field `flusherz`, expected one of `name`"),
        "{e}"
    );
    assert!(e.message.ends_with("at line 11 column 5"), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with("/etc/gleaner/test.yaml: pipelines[0].flusherz: unknown field"),
        "{shown}"
    );
}

#[test]
fn wrong_types_name_the_exact_key() {
    let text = MINIMAL.replace("  - name: web", "  - name: web\n    queue_batches: lots");
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "pipelines[0].queue_batches");
}

#[test]
fn unknown_builtin_lists_the_builtins() {
    let text = MINIMAL.replace("builtin:parse-regex", "builtin:nope");
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "pipelines[0].processors[0].plugin");
    assert!(
        e.message.contains("parse-regex") && e.message.contains("stdout"),
        "{e}"
    );
}

#[test]
fn bad_multiline_regex_names_the_pattern_key() {
    let text = MINIMAL.replace(
        "paths: [\"logs/*.log\"]",
        "paths: [\"logs/*.log\"]\n        multiline: { start: '(' }",
    );
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "pipelines[0].inputs[0].multiline.start");
    assert!(e.message.starts_with("invalid regex"), "{e}");
}

#[test]
fn processors_cannot_be_granted_anything() {
    let text = MINIMAL.replace(
        "config: { pattern: '^(?P<ip>\\S+)' }",
        "grants: { hosts: ['127.0.0.1:80'] }",
    );
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "pipelines[0].processors[0].grants");
}

#[test]
fn duplicate_pipeline_names_are_rejected() {
    let body = MINIMAL.split_once("pipelines:\n").unwrap().1;
    let text = format!("data_dir: s\npipelines:\n{body}{body}");
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "pipelines[1].name");
}

#[test]
fn grants_hosts_must_be_host_and_port() {
    let text = MINIMAL.replace(
        "grants: { stdout: true }",
        "grants: { hosts: ['localhost'] }",
    );
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "pipelines[0].flushers[0].grants.hosts[0]");
}
