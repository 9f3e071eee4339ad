use super::*;
use crate::data::tail::{Format, StartAt};
use crate::plugin::PluginSource;

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
        c.pipelines[0].inputs[0].read().unwrap().include,
        vec!["/etc/gleaner/logs/*.log".to_string()]
    );
    assert_eq!(
        c.pipelines[0].inputs[0].read().unwrap().start_at,
        StartAt::End
    );
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

fn docker_input(input: &str) -> Result<Config, ConfigError> {
    let text = MINIMAL.replace(
        "      - type: file\n        paths: [\"logs/*.log\"]",
        &format!("      - type: docker\n{input}"),
    );
    parse_str(&text)
}

#[test]
fn docker_inputs_are_checked_key_by_key() {
    let c = docker_input(
        "        paths: [/var/log/app/*.log]\n        include: { labels: { app: web }, name: \"web-.*\" }\n        env_tags: [VERSION]\n        start_at: beginning",
    )
    .unwrap();
    let input = &c.pipelines[0].inputs[0];
    assert_eq!(input.read().unwrap().start_at, StartAt::Beginning);
    let Some(DiscoveryConfig::Docker(d)) = input.discovery() else {
        panic!("a docker input");
    };
    assert!(d.stdout);
    assert_eq!(d.paths, vec!["/var/log/app/*.log"]);
    assert_eq!(d.include.labels[0].0, "app");
    assert!(d.include.labels[0].1.is_match("web"));
    assert!(!d.include.labels[0].1.is_match("webapp"), "whole value");
    assert!(d.include.name.as_ref().unwrap().is_match("web-1"));
    assert_eq!(d.env_tags, vec!["VERSION"]);
    assert_eq!(d.host_root, PathBuf::from("/"));

    let cases = [
        (
            "        endpoint: tcp://10.0.0.1:2375",
            "pipelines[0].inputs[0].endpoint",
            "is not supported: use a unix:// socket address",
        ),
        (
            "        paths: [var/log/*.log]",
            "pipelines[0].inputs[0].paths[0]",
            "must be an absolute path as seen inside the container",
        ),
        (
            "        include: { labels: { app: \"(\" } }",
            "pipelines[0].inputs[0].include.labels.app",
            "invalid regex",
        ),
        (
            "        exclude: { image: \"[\" }",
            "pipelines[0].inputs[0].exclude.image",
            "invalid regex",
        ),
        (
            "        stdout: false",
            "pipelines[0].inputs[0]",
            "nothing to collect",
        ),
        (
            "        host_root: host",
            "pipelines[0].inputs[0].host_root",
            "must be an absolute path",
        ),
        (
            "        streams: [stdout]",
            "pipelines[0].inputs[0].streams",
            "unknown field `streams`",
        ),
    ];
    for (input, key, message) in cases {
        let e = docker_input(input).unwrap_err();
        assert_eq!(e.key, key, "{input}: {e}");
        assert!(e.message.contains(message), "{input}: {e}");
    }
}

#[test]
fn file_inputs_take_a_line_format() {
    let text = MINIMAL.replace(
        "paths: [\"logs/*.log\"]",
        "paths: [\"logs/*.log\"]\n        format: docker-json",
    );
    let c = parse_str(&text).unwrap();
    assert_eq!(
        c.pipelines[0].inputs[0].read().unwrap().format,
        Format::DockerJson
    );
    let bad = MINIMAL.replace(
        "paths: [\"logs/*.log\"]",
        "paths: [\"logs/*.log\"]\n        format: cri-o",
    );
    let e = parse_str(&bad).unwrap_err();
    assert_eq!(e.key, "pipelines[0].inputs[0].format");
    assert!(e.message.contains("unknown variant `cri-o`"), "{e}");
}

#[test]
fn pipeline_resources_and_api_are_checked() {
    let c = parse_str(
        "data_dir: state\napi: {}\npipeline_resources: { node_name: node-1, cluster: false }\n",
    )
    .unwrap();
    assert!(c.pipelines.is_empty());
    assert_eq!(c.api, Some("127.0.0.1:8686".parse().unwrap()));
    let r = c.pipeline_resources.unwrap();
    assert_eq!(
        (r.node_name.as_str(), r.namespaced, r.cluster),
        ("node-1", true, false)
    );
    assert_eq!(r.kubelet_dir, "/var/lib/kubelet");
    assert_eq!(r.base, PathBuf::from("/etc/gleaner"));
    let cases = [
        (
            "data_dir: s\n",
            "pipelines",
            "at least one pipeline is needed",
        ),
        (
            "data_dir: s\napi: { address: localhost }\npipeline_resources: { node_name: n }\n",
            "api.address",
            "`localhost` is not ip:port",
        ),
        (
            "data_dir: s\npipeline_resources: { node_name: n, api_server: \"10.0.0.1\" }\n",
            "pipeline_resources.api_server",
            "is not a URL",
        ),
        (
            "data_dir: s\npipeline_resources: { node_name: n, kubelet_dir: var/lib/kubelet }\n",
            "pipeline_resources.kubelet_dir",
            "must be an absolute path",
        ),
        (
            "data_dir: s\npipeline_resources: { node_name: n, namespaced: false, cluster: false }\n",
            "pipeline_resources",
            "nothing to watch",
        ),
    ];
    for (text, key, message) in cases {
        let e = parse_str(text).unwrap_err();
        assert_eq!(e.key, key, "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
    }
}

#[test]
fn bundles_resolve_merge_their_config_and_need_their_grants() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("plugins/out-1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plugin.wasm"), b"component").unwrap();
    std::fs::write(
        dir.join(crate::plugin::bundle::MANIFEST),
        format!(
            "name: out\nversion: 1.0.0\nkind: flusher\nsha256: {}\nconfig: {{ path: a, level: 1 }}\ngrants: {{ hosts: [\"logs:443\"] }}\n",
            crate::plugin::digest(b"component")
        ),
    )
    .unwrap();
    let config = |entry: &str| {
        format!(
            "data_dir: state\nplugins_dir: plugins\npipelines:\n  - name: p\n    inputs: [{{ type: file, paths: [x] }}]\n    flushers: [{entry}]\n"
        )
    };
    let file = t.path().join("g.yaml");
    let c = parse(
        &file,
        &config("{ plugin: out, config: { level: 2 }, grants: { hosts: [\"logs:443\"] } }"),
    )
    .unwrap();
    let f = &c.pipelines[0].flushers[0];
    assert_eq!(f.reference, "out@1.0.0");
    assert_eq!(f.spec.config_json, r#"{"level":2,"path":"a"}"#);
    assert!(matches!(&f.spec.source, PluginSource::Bundle { id, .. } if id == "out@1.0.0"));
    let e = parse(&file, &config("{ plugin: out }")).unwrap_err();
    assert_eq!(e.key, "pipelines[0].flushers[0].grants");
    assert_eq!(
        e.message,
        "bundle out@1.0.0 needs grants the pipeline does not give: hosts: logs:443"
    );
    let e = parse(
        &file,
        &config("{ plugin: out@2.0.0, grants: { hosts: [\"logs:443\"] } }"),
    )
    .unwrap_err();
    assert_eq!(e.key, "pipelines[0].flushers[0].plugin");
    assert!(
        e.message.ends_with("(versions: out@1.0.0)"),
        "{}",
        e.message
    );
    let text = config("{ plugin: out }").replace("plugins_dir: plugins\n", "");
    let e = parse(&file, &text).unwrap_err();
    assert!(e.message.contains("no plugins_dir is set"), "{}", e.message);
}

#[test]
fn kubernetes_events_inputs_get_a_lease_each() {
    let pipeline = |name: &str, input: &str| {
        format!(
            "  - name: {name}\n    inputs: [{{ type: kubernetes_events{input} }}]\n    flushers: [{{ plugin: builtin:stdout, grants: {{ stdout: true }} }}]\n"
        )
    };
    let text = format!(
        "data_dir: s\npipelines:\n{}{}",
        pipeline("Cluster_Events", ", identity: node-7"),
        pipeline(
            "warnings",
            ", lease: warn-events, lease_namespace: ops, start_at: now, namespaces: [shop], field_selector: type=Warning"
        )
    );
    let c = parse_str(&text).unwrap();
    let events = |i: usize| match &c.pipelines[i].inputs[0] {
        InputConfig::KubernetesEvents(k) => k.clone(),
        other => panic!("{other:?}"),
    };
    let (a, b) = (events(0), events(1));
    assert_eq!(a.lease, "gleaner-events-cluster-events");
    assert_eq!(a.identity, "node-7");
    assert_eq!(a.start_at, crate::data::kube_events::EventsStart::Existing);
    assert_eq!(
        (b.lease.as_str(), b.lease_namespace.as_str()),
        ("warn-events", "ops")
    );
    assert_eq!(b.start_at, crate::data::kube_events::EventsStart::Now);
    assert_eq!(b.namespaces, vec!["shop"]);
    assert_eq!(b.field_selector.as_deref(), Some("type=Warning"));

    let twice = format!(
        "data_dir: s\npipelines:\n{}{}",
        pipeline("a", ", lease: shared, lease_namespace: ops"),
        pipeline("b", ", lease: shared, lease_namespace: ops")
    );
    let cases = [
        (
            twice,
            "pipelines[1].inputs[0].lease",
            "Lease `ops/shared` is also pipelines[0].inputs[0].lease's",
        ),
        (
            format!(
                "data_dir: s\npipelines:\n{}",
                pipeline("a", ", lease: Events_1")
            ),
            "pipelines[0].inputs[0].lease",
            "is not a Kubernetes object name",
        ),
        (
            format!(
                "data_dir: s\npipelines:\n{}",
                pipeline("a", ", lease: gleaner-pipeline-status")
            ),
            "pipelines[0].inputs[0].lease",
            "elects the agent writing pipeline status",
        ),
        (
            format!("data_dir: s\npipelines:\n{}", pipeline("events_", "")),
            "pipelines[0].inputs[0].lease",
            "`gleaner-events-events-` (from the pipeline's name) is not a Kubernetes object name",
        ),
        (
            format!(
                "data_dir: s\npipelines:\n{}",
                pipeline("a", ", start_at: beginning")
            ),
            "pipelines[0].inputs[0].start_at",
            "unknown variant `beginning`",
        ),
        (
            format!(
                "data_dir: s\npipelines:\n{}",
                pipeline("a", ", api_server: x")
            ),
            "pipelines[0].inputs[0].api_server",
            "is not a URL",
        ),
    ];
    for (text, key, message) in cases {
        let e = parse_str(&text).unwrap_err();
        assert_eq!(e.key, key, "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
    }
}
