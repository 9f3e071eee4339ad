//! The custom resources, as Rust types: `GleanerPipeline` (namespaced: the
//! pods of its own namespace) and `ClusterGleanerPipeline` (cluster-scoped:
//! pods of any namespace). The CRD YAML in `deploy/kubernetes/` is
//! generated from these types (`gleaner crd`) and a test keeps it in sync.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "gleaner.io";

/// A pipeline for the pods of one namespace: which pods and containers,
/// what to read from them, and the processors and flushers, as in the
/// YAML config. Every Gleaner agent runs it for the pods of its own node.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "gleaner.io",
    version = "v1alpha1",
    kind = "GleanerPipeline",
    namespaced,
    status = "PipelineStatus",
    shortname = "glp",
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GleanerPipelineSpec {
    /// Pods whose labels match this selector (all pods of the namespace if
    /// omitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Container names (all containers if empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<String>,
    /// Read the containers' stdout and stderr. Default true.
    #[serde(default = "default_true")]
    pub stdout: bool,
    /// Files inside the containers (absolute glob patterns as the container
    /// sees them), read where an `emptyDir` or `hostPath` volume holds them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// More reading options of the `kubernetes` input, with the config
    /// file's names: `start_at`, `multiline`, `max_line_bytes`,
    /// `partial_line_timeout`, `label_tags`, `annotation_tags`, `exclude`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub input: Option<serde_json::Value>,
    /// Processor plugins, in order, as in the config file
    /// (`plugin`, `config`, `limits`, `on_error`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "free_objects")]
    pub processors: Vec<serde_json::Value>,
    /// Flusher plugins, as in the config file (`plugin`, `config`,
    /// `limits`, `grants`, `on_error`, `spill`).
    #[schemars(schema_with = "free_objects")]
    pub flushers: Vec<serde_json::Value>,
    /// Batch bounds, as in the config file (`max_events`, `max_bytes`,
    /// `linger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_object")]
    pub batch: Option<serde_json::Value>,
}

/// A pipeline for pods of any namespace; only cluster administrators
/// should be allowed to create it (it may use plugin files and grant
/// directories on the node).
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "gleaner.io",
    version = "v1alpha1",
    kind = "ClusterGleanerPipeline",
    status = "PipelineStatus",
    shortname = "cglp",
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterGleanerPipelineSpec {
    /// Namespace patterns (regular expressions matching the whole name);
    /// all namespaces if empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Everything else, as in a `GleanerPipeline`.
    #[serde(flatten)]
    pub pipeline: GleanerPipelineSpec,
}

/// What the agents report about a pipeline resource.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Accepted`: whether the spec is valid and the pipeline runs
    /// (`reason`: `Running`, `InvalidSpec`, `PluginFailed`, `NameTaken`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn default_true() -> bool {
    true
}

fn free_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn free_objects(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// Both CustomResourceDefinitions as one YAML stream (`gleaner crd`).
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    use kube::CustomResourceExt;
    let mut out =
        String::from("# Generated by `gleaner crd` from runtime/src/crd/types.rs; do not edit.\n");
    out.push_str("---\n");
    out.push_str(&serde_yaml_ng::to_string(&GleanerPipeline::crd())?);
    out.push_str("---\n");
    out.push_str(&serde_yaml_ng::to_string(&ClusterGleanerPipeline::crd())?);
    Ok(out)
}
