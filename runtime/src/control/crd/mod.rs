//! Pipelines defined by Kubernetes resources: `GleanerPipeline`
//! (namespaced) and `ClusterGleanerPipeline` (cluster-scoped). This module
//! turns a resource into a checked [`PipelineConfig`] through the same
//! checks as the config file (a `kubernetes` input for the selected pods,
//! then the processors and flushers as written); `watch` follows the
//! resources and hands the set to the supervisor, and writes each
//! resource's `Accepted` condition.
//!
//! A namespaced resource is written by namespace users, so it may only use
//! `builtin:` plugins and may not grant directories on the node; a cluster
//! resource may do what the config file may.
//!
//! Owns the conversion and the resource API; never reads log files or
//! starts pipelines itself.

pub mod types;
pub mod watch;

use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::config::{ConfigError, PipelineResources};
use crate::control::supervisor::Desired;
use types::GleanerPipelineSpec;

/// The options of the generated input a resource may set under `input`.
const INPUT_KEYS: &[&str] = &[
    "start_at",
    "multiline",
    "max_line_bytes",
    "partial_line_timeout",
    "rescan_interval",
    "poll_interval",
    "release_deleted_after",
    "label_tags",
    "annotation_tags",
    "namespace_label_tags",
    "exclude",
];

/// Which resource a pipeline comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId {
    /// Namespace (`None`: a `ClusterGleanerPipeline`).
    pub namespace: Option<String>,
    /// Resource name.
    pub name: String,
}

impl ResourceId {
    /// The pipeline's name: `<namespace>.<name>`, or `_cluster.<name>`
    /// (no namespace starts with `_`, so the two never collide).
    pub fn pipeline_name(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}.{}", self.name),
            None => format!("_cluster.{}", self.name),
        }
    }

    /// How errors name the resource: `GleanerPipeline shop/web`.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("GleanerPipeline {ns}/{}", self.name),
            None => format!("ClusterGleanerPipeline {}", self.name),
        }
    }
}

/// Checks a resource's spec and turns it into a pipeline. `namespaces`:
/// the cluster resource's namespace patterns (ignored for namespaced ones).
pub fn to_pipeline(
    id: &ResourceId,
    spec: &GleanerPipelineSpec,
    namespaces: &[String],
    node: &PipelineResources,
) -> Result<Desired, ConfigError> {
    let origin = PathBuf::from(id.describe());
    let err = |key: String, message: String| ConfigError {
        file: origin.clone(),
        key,
        message,
    };
    if id.namespace.is_some() {
        for (list, entries) in [
            ("processors", &spec.processors),
            ("flushers", &spec.flushers),
        ] {
            for (i, e) in entries.iter().enumerate() {
                let plugin = e.get("plugin").and_then(Value::as_str).unwrap_or_default();
                if !plugin.is_empty() && !plugin.starts_with("builtin:") {
                    return Err(err(
                        format!("spec.{list}[{i}].plugin"),
                        format!(
                            "`{plugin}`: a GleanerPipeline may only use builtin: plugins (plugin files need a ClusterGleanerPipeline)"
                        ),
                    ));
                }
                if e.pointer("/grants/dirs")
                    .and_then(Value::as_array)
                    .is_some_and(|d| !d.is_empty())
                {
                    return Err(err(
                        format!("spec.{list}[{i}].grants.dirs"),
                        "a GleanerPipeline may not grant directories on the node (use a ClusterGleanerPipeline)".into(),
                    ));
                }
            }
        }
    }
    let mut input = Map::new();
    input.insert("type".into(), json!("kubernetes"));
    if let Some(url) = &node.api_server {
        input.insert("api_server".into(), json!(url));
    }
    input.insert("node_name".into(), json!(node.node_name));
    input.insert("pods_dir".into(), json!(node.pods_dir));
    input.insert("host_root".into(), json!(node.host_root));
    input.insert("kubelet_dir".into(), json!(node.kubelet_dir));
    input.insert("stdout".into(), json!(spec.stdout));
    input.insert("paths".into(), json!(spec.paths));
    if let Some(sel) = &spec.selector {
        input.insert("selector".into(), json!(sel));
    }
    let mut include = Map::new();
    match &id.namespace {
        Some(ns) => {
            include.insert("namespaces".into(), json!([regex::escape(ns)]));
        }
        None if !namespaces.is_empty() => {
            include.insert("namespaces".into(), json!(namespaces));
        }
        None => {}
    }
    if !spec.containers.is_empty() {
        let names: Vec<String> = spec.containers.iter().map(|c| regex::escape(c)).collect();
        include.insert("container".into(), json!(names.join("|")));
    }
    input.insert("include".into(), Value::Object(include));
    match &spec.input {
        None | Some(Value::Null) => {}
        Some(Value::Object(extra)) => {
            for (k, v) in extra {
                if !INPUT_KEYS.contains(&k.as_str()) {
                    return Err(err(
                        format!("spec.input.{k}"),
                        format!(
                            "not an option a resource may set (these are: {})",
                            INPUT_KEYS.join(", ")
                        ),
                    ));
                }
                input.insert(k.clone(), v.clone());
            }
        }
        Some(_) => return Err(err("spec.input".into(), "must be an object".into())),
    }
    let mut pipeline = Map::new();
    pipeline.insert("name".into(), json!(id.pipeline_name()));
    pipeline.insert("inputs".into(), json!([Value::Object(input)]));
    pipeline.insert("processors".into(), json!(spec.processors));
    pipeline.insert("flushers".into(), json!(spec.flushers));
    if let Some(b) = &spec.batch {
        pipeline.insert("batch".into(), b.clone());
    }
    let value = Value::Object(pipeline);
    // Only cluster resources may name bundles (see the check above).
    let bundles = match (&node.plugins_dir, &id.namespace) {
        (Some(dir), None) => Some(crate::plugin::bundle::Registry::scan(dir).map_err(|e| {
            err(
                "spec".into(),
                format!("cannot read plugins_dir {}: {e}", dir.display()),
            )
        })?),
        _ => None,
    };
    let config =
        crate::config::pipeline_from_json(&origin, &node.base, bundles.as_ref(), "spec", value)
            .map_err(|mut e| {
                // The generated input's keys are the spec's own.
                if let Some(rest) = e.key.strip_prefix("spec.inputs[0]") {
                    e.key = match rest.strip_prefix(".include.container") {
                        Some(_) => "spec.containers".into(),
                        None => match rest.strip_prefix(".include.namespaces") {
                            Some(r) => format!("spec.namespaces{r}"),
                            None => format!("spec{rest}"),
                        },
                    };
                }
                e
            })?;
    Ok(Desired { config })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> PipelineResources {
        PipelineResources {
            api_server: Some("http://127.0.0.1:1".into()),
            node_name: "node-1".into(),
            pods_dir: "/var/log/pods".into(),
            host_root: "/".into(),
            kubelet_dir: "/var/lib/kubelet".into(),
            namespaced: true,
            cluster: true,
            lease_namespace: "gleaner".into(),
            base: PathBuf::from("/etc/gleaner"),
            plugins_dir: None,
        }
    }

    fn spec(v: Value) -> GleanerPipelineSpec {
        serde_json::from_value(v).unwrap()
    }

    fn id(ns: Option<&str>) -> ResourceId {
        ResourceId {
            namespace: ns.map(Into::into),
            name: "web".into(),
        }
    }

    #[test]
    fn a_namespaced_resource_reads_only_its_namespace_and_selected_pods() {
        let s = spec(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "containers": ["nginx", "php.fpm"],
            "input": {"start_at": "beginning"},
            "processors": [{"plugin": "builtin:parse-regex", "config": {"pattern": "(?P<x>.*)"}}],
            "flushers": [{"plugin": "builtin:stdout", "grants": {"stdout": true}}]
        }));
        let d = to_pipeline(&id(Some("shop")), &s, &[], &node()).unwrap();
        assert_eq!(d.config.name, "shop.web");
        let crate::config::DiscoveryConfig::Kubernetes(k) = d.config.inputs[0].discovery().unwrap()
        else {
            panic!("not a kubernetes input")
        };
        assert_eq!(k.node_name, "node-1");
        assert!(k.include.namespaces[0].is_match("shop"));
        assert!(!k.include.namespaces[0].is_match("shopx"));
        let c = k.include.container.as_ref().unwrap();
        assert!(c.is_match("nginx") && c.is_match("php.fpm") && !c.is_match("phpxfpm"));
        assert!(k.selector.is_some() && k.stdout);
        assert_eq!(d.config.processors.len(), 1);
        // Same spec, same fingerprint; any change, another.
        let again = to_pipeline(&id(Some("shop")), &s, &[], &node()).unwrap();
        let fp = |d: &Desired| crate::control::supervisor::Fingerprint::of(&d.config);
        assert_eq!(fp(&again), fp(&d));
        let mut changed = s.clone();
        changed.stdout = false;
        changed.paths = vec!["/var/log/app/*.log".into()];
        assert_ne!(
            fp(&to_pipeline(&id(Some("shop")), &changed, &[], &node()).unwrap()),
            fp(&d)
        );
    }

    #[test]
    fn errors_name_the_resource_and_the_spec_key() {
        let cases = [
            (
                json!({"flushers": [{"plugin": "/opt/evil.wasm"}]}),
                "GleanerPipeline shop/web: spec.flushers[0].plugin: `/opt/evil.wasm`: a GleanerPipeline may only use builtin: plugins (plugin files need a ClusterGleanerPipeline)",
            ),
            (
                json!({"flushers": [{"plugin": "builtin:file", "grants": {"dirs": ["/"]}}]}),
                "GleanerPipeline shop/web: spec.flushers[0].grants.dirs: a GleanerPipeline may not grant directories on the node (use a ClusterGleanerPipeline)",
            ),
            (
                json!({"flushers": [{"plugin": "builtin:nope"}]}),
                "GleanerPipeline shop/web: spec.flushers[0].plugin: there is no builtin plugin `nope`",
            ),
            (
                json!({"flushers": [{"plugin": "builtin:stdout", "grants": {"stdout": true}}], "input": {"node_name": "x"}}),
                "GleanerPipeline shop/web: spec.input.node_name: not an option a resource may set",
            ),
            (
                json!({"flushers": [{"plugin": "builtin:stdout", "grants": {"stdout": true}}], "input": {"start_at": "middle"}}),
                "GleanerPipeline shop/web: spec.start_at: unknown variant `middle`",
            ),
            (
                json!({"flushers": [{"plugin": "builtin:stdout", "grants": {"stdout": true}}], "selector": {"matchExpressions": [{"key": "a", "operator": "Maybe"}]}}),
                "GleanerPipeline shop/web: spec.selector: matchExpressions[0]: unknown operator `Maybe`",
            ),
            (
                json!({"flushers": [{"plugin": "builtin:stdout", "grants": {"stdout": true}}], "stdout": false}),
                "GleanerPipeline shop/web: spec.stdout: nothing to read",
            ),
            (
                json!({"flushers": []}),
                "GleanerPipeline shop/web: spec.flushers: at least one flusher is needed",
            ),
        ];
        for (s, want) in cases {
            let got = to_pipeline(&id(Some("shop")), &spec(s), &[], &node())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(got.starts_with(want), "got {got:?}, want {want:?}");
        }
        // A cluster resource's bad namespace pattern names its own key.
        let s =
            spec(json!({"flushers": [{"plugin": "builtin:stdout", "grants": {"stdout": true}}]}));
        let got = to_pipeline(&id(None), &s, &["(".into()], &node())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            got.starts_with("ClusterGleanerPipeline web: spec.namespaces[0]: invalid regex"),
            "{got}"
        );
    }
}
