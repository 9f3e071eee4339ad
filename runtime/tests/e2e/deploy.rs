//! The Kubernetes manifests in `deploy/kubernetes/`: every document parses
//! into its `k8s-openapi` type, the CRD file is what `gleaner crd` prints,
//! the DaemonSet mounts what its config reads (read-only where it only
//! reads), probes and RBAC fit the agent, and the configs and example
//! resources pass Gleaner's own checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Namespace, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde_json::Value;

use crate::common::*;

fn deploy_dir() -> PathBuf {
    workspace().join("deploy/kubernetes")
}

/// Every YAML document of `path`, as JSON.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[derive(Default)]
struct Manifests {
    namespaces: Vec<Namespace>,
    accounts: Vec<ServiceAccount>,
    roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    ns_roles: Vec<Role>,
    ns_bindings: Vec<RoleBinding>,
    config_maps: Vec<ConfigMap>,
    daemon_sets: Vec<DaemonSet>,
    deployments: Vec<Deployment>,
    crds: Vec<CustomResourceDefinition>,
    pipelines: Vec<Value>,
}

/// Parses every manifest file of `dir` into its typed kind; an unknown
/// kind or a field its type does not have fails the test.
fn load(dir: &Path) -> Manifests {
    let mut m = Manifests::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    for file in files {
        for doc in documents(&file) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            let at = format!("{} ({kind})", file.display());
            // Typed, and back: a field the type does not know (a typo)
            // would be dropped, so the round trip must give the same JSON.
            fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
                doc: &Value,
                at: &str,
            ) -> T {
                let t: T =
                    serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{at}: {e}"));
                assert_eq!(
                    &serde_json::to_value(&t).unwrap(),
                    doc,
                    "{at}: unknown or malformed fields"
                );
                t
            }
            match kind.as_str() {
                "Namespace" => m.namespaces.push(typed(&doc, &at)),
                "ServiceAccount" => m.accounts.push(typed(&doc, &at)),
                "ClusterRole" => m.roles.push(typed(&doc, &at)),
                "ClusterRoleBinding" => m.bindings.push(typed(&doc, &at)),
                "Role" => m.ns_roles.push(typed(&doc, &at)),
                "RoleBinding" => m.ns_bindings.push(typed(&doc, &at)),
                "ConfigMap" => m.config_maps.push(typed(&doc, &at)),
                "DaemonSet" => m.daemon_sets.push(typed(&doc, &at)),
                "Deployment" => m.deployments.push(typed(&doc, &at)),
                "CustomResourceDefinition" => m.crds.push(typed(&doc, &at)),
                "GleanerPipeline" | "ClusterGleanerPipeline" => m.pipelines.push(doc),
                other => panic!("{at}: unexpected kind `{other}`"),
            }
        }
    }
    m
}

/// `gleaner validate` on a config from a manifest, with its data_dir moved
/// into the test directory (validation creates it) and `$NODE_NAME` set as
/// the downward API would.
fn validate(env: &Env, name: &str, text: &str) {
    let data_dir = serde_yaml_ng::from_str::<Value>(text).unwrap()["data_dir"]
        .as_str()
        .unwrap()
        .to_owned();
    let text = text.replacen(
        &format!("data_dir: {data_dir}"),
        &format!(
            "data_dir: {}\nplugin_cache_dir: {}",
            env.path(name).display(),
            shared_cache().display()
        ),
        1,
    );
    let path = env.write(&format!("{name}.yaml"), &text);
    let out = gleaner()
        .args(["validate", "--config"])
        .arg(&path)
        .env("NODE_NAME", "node-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The volume mounted at the deepest mount point at or above `path`.
fn mount_for<'a>(c: &'a Container, path: &str) -> (&'a str, bool) {
    let m = c
        .volume_mounts
        .iter()
        .flatten()
        .filter(|m| path == m.mount_path || path.starts_with(&format!("{}/", m.mount_path)))
        .max_by_key(|m| m.mount_path.len())
        .unwrap_or_else(|| panic!("nothing of container {} is mounted at {path}", c.name));
    (m.name.as_str(), m.read_only == Some(true))
}

fn host_path_of<'a>(spec: &'a PodSpec, volume: &str) -> Option<&'a str> {
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.name == volume)
        .and_then(|v| v.host_path.as_ref())
        .map(|h| h.path.as_str())
}

#[test]
fn crd_yaml_is_generated_from_the_types() {
    let out = gleaner().arg("crd").output().unwrap();
    assert!(out.status.success());
    let want = String::from_utf8(out.stdout).unwrap();
    let have = std::fs::read_to_string(deploy_dir().join("10-crd.yaml")).unwrap();
    assert!(
        have == want,
        "deploy/kubernetes/10-crd.yaml is stale: run `cargo run --release -- crd > deploy/kubernetes/10-crd.yaml`"
    );
    let m = load(&deploy_dir());
    let names: Vec<&str> = m
        .crds
        .iter()
        .map(|c| c.metadata.name.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        vec![
            "gleanerpipelines.gleaner.io",
            "clustergleanerpipelines.gleaner.io"
        ]
    );
    for crd in &m.crds {
        let v = &crd.spec.versions[0];
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
    }
    assert_eq!(m.crds[0].spec.scope, "Namespaced");
    assert_eq!(m.crds[1].spec.scope, "Cluster");
}

#[test]
fn daemon_set_mounts_what_its_config_reads_with_least_privilege() {
    let env = Env::new();
    let m = load(&deploy_dir());
    assert_eq!(m.namespaces.len(), 1);
    let ns = m.namespaces[0].metadata.name.clone().unwrap();
    let ds = &m.daemon_sets[0];
    assert_eq!(ds.metadata.namespace.as_deref(), Some(ns.as_str()));
    let spec = ds.spec.template.spec.as_ref().unwrap();
    let c = &spec.containers[0];

    // The config file comes from the ConfigMap mounted where args point.
    let args = c.args.clone().unwrap();
    let config_path = &args[args.iter().position(|a| a == "--config").unwrap() + 1];
    let (vol, ro) = mount_for(c, config_path);
    assert!(ro);
    let cm_name = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == vol)
        .and_then(|v| v.config_map.as_ref())
        .map(|c| c.name.clone())
        .unwrap();
    let cm = m
        .config_maps
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(cm_name.as_str()))
        .unwrap();
    let file = Path::new(config_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let text = cm.data.as_ref().unwrap()[file].clone();
    validate(&env, "daemonset-config", &text);
    let config: Value = serde_yaml_ng::from_str(&text).unwrap();

    // Everything the config reads is a read-only hostPath of the same path;
    // the data dir a writable hostPath (checkpoints survive the pod).
    let input = &config["pipelines"][0]["inputs"][0];
    let resources = &config["pipeline_resources"];
    for dir in [&input["pods_dir"], &resources["pods_dir"]] {
        let dir = dir.as_str().unwrap_or("/var/log/pods");
        let (vol, ro) = mount_for(c, dir);
        assert!(ro, "{dir} must be read-only");
        assert_eq!(host_path_of(spec, vol), Some(dir));
    }
    for dir in [&input["kubelet_dir"], &resources["kubelet_dir"]] {
        let pods = format!("{}/pods", dir.as_str().unwrap_or("/var/lib/kubelet"));
        let (vol, ro) = mount_for(c, &pods);
        assert!(ro);
        assert_eq!(host_path_of(spec, vol), Some(pods.as_str()));
    }
    for dir in ["/var/log/containers", "/var/lib/docker/containers"] {
        let (vol, ro) = mount_for(c, dir);
        assert!(ro);
        assert_eq!(host_path_of(spec, vol), Some(dir));
    }
    let data_dir = config["data_dir"].as_str().unwrap();
    let (vol, ro) = mount_for(c, data_dir);
    assert!(!ro);
    assert_eq!(host_path_of(spec, vol), Some(data_dir));

    // NODE_NAME from the downward API; probes on the API's port.
    let node = c
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "NODE_NAME")
        .unwrap();
    assert_eq!(
        node.value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("spec.nodeName")
    );
    let api_port: i32 = config["api"]["address"]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    let port = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("api"))
        .unwrap();
    assert_eq!(port.container_port, api_port);
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
    }
    let res = c.resources.as_ref().unwrap();
    assert!(
        res.requests
            .as_ref()
            .is_some_and(|r| r.contains_key("cpu") && r.contains_key("memory"))
    );
    assert!(
        res.limits
            .as_ref()
            .is_some_and(|r| r.contains_key("memory"))
    );
    assert!(
        spec.tolerations
            .iter()
            .flatten()
            .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none())
    );

    // RBAC: the DaemonSet's account, bound to a role that can read pods and
    // namespaces and the pipeline resources, write their status, and
    // nothing else.
    let sa = spec.service_account_name.clone().unwrap();
    assert!(
        m.accounts
            .iter()
            .any(|a| a.metadata.name.as_deref() == Some(sa.as_str())
                && a.metadata.namespace.as_deref() == Some(ns.as_str()))
    );
    let binding = &m.bindings[0];
    let subject = &binding.subjects.as_ref().unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        (sa.as_str(), Some(ns.as_str()))
    );
    let role = m
        .roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(binding.role_ref.name.as_str()))
        .unwrap();
    let mut granted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rule in role.rules.iter().flatten() {
        for group in rule.api_groups.iter().flatten() {
            for res in rule.resources.iter().flatten() {
                granted
                    .entry(format!("{group}/{res}"))
                    .or_default()
                    .extend(rule.verbs.iter().cloned());
            }
        }
    }
    let read = vec!["list", "watch"];
    let write_status = vec!["patch"];
    let want: BTreeMap<String, Vec<&str>> = [
        ("/pods", &read),
        ("/namespaces", &read),
        ("/events", &read),
        ("gleaner.io/gleanerpipelines", &read),
        ("gleaner.io/clustergleanerpipelines", &read),
        ("gleaner.io/gleanerpipelines/status", &write_status),
        ("gleaner.io/clustergleanerpipelines/status", &write_status),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.clone()))
    .collect();
    assert_eq!(
        granted,
        want.into_iter()
            .map(|(k, v)| (k, v.into_iter().map(String::from).collect()))
            .collect()
    );
    // In its own namespace: the status writer's and the Events input's
    // Leases, and no more.
    let role = &m.ns_roles[0];
    assert_eq!(role.metadata.namespace.as_deref(), Some(ns.as_str()));
    type Rule = (Vec<String>, Option<Vec<String>>, Vec<String>);
    let rules: Vec<Rule> = role
        .rules
        .iter()
        .flatten()
        .map(|r| {
            (
                r.resources.clone().unwrap_or_default(),
                r.resource_names.clone(),
                r.verbs.clone(),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rules,
        vec![
            (s(&["leases"]), None, s(&["create"])),
            (
                s(&["leases"]),
                Some(s(&["gleaner-pipeline-status", "gleaner-events"])),
                s(&["get", "update"])
            ),
        ]
    );
    let rb = &m.ns_bindings[0];
    assert_eq!(rb.role_ref.name, role.metadata.name.clone().unwrap());
    assert_eq!(rb.subjects.as_ref().unwrap()[0].name, sa);
}

#[test]
fn sidecar_and_resource_examples_check() {
    let env = Env::new();
    let m = load(&deploy_dir().join("examples"));
    // The sidecar reads the files the app writes, from the same volume.
    let d = &m.deployments[0];
    let spec = d.spec.template.spec.as_ref().unwrap();
    let app = spec.containers.iter().find(|c| c.name == "app").unwrap();
    let agent = spec
        .containers
        .iter()
        .find(|c| c.name == "gleaner")
        .unwrap();
    let text = m.config_maps[0].data.as_ref().unwrap()["gleaner.yaml"].clone();
    validate(&env, "sidecar-config", &text);
    let config: Value = serde_yaml_ng::from_str(&text).unwrap();
    let pattern = config["pipelines"][0]["inputs"][0]["paths"][0]
        .as_str()
        .unwrap();
    let dir = Path::new(pattern).parent().unwrap().to_str().unwrap();
    let (agent_vol, ro) = mount_for(agent, dir);
    assert!(ro);
    assert_eq!(mount_for(app, dir).0, agent_vol);
    // The example resources pass the agent's checks.
    let node = gleaner::config::PipelineResources {
        api_server: None,
        node_name: "node-1".into(),
        pods_dir: "/var/log/pods".into(),
        host_root: "/".into(),
        kubelet_dir: "/var/lib/kubelet".into(),
        namespaced: true,
        cluster: true,
        lease_namespace: "gleaner".into(),
        base: PathBuf::from("/etc/gleaner"),
        plugins_dir: None,
    };
    assert_eq!(m.pipelines.len(), 2);
    for doc in &m.pipelines {
        let name = doc["metadata"]["name"].as_str().unwrap().to_owned();
        let checked = if doc["kind"] == "GleanerPipeline" {
            let r: gleaner::control::crd::types::GleanerPipeline =
                serde_json::from_value(doc.clone()).unwrap();
            let id = gleaner::control::crd::ResourceId {
                namespace: r.metadata.namespace.clone(),
                name,
            };
            gleaner::control::crd::to_pipeline(&id, &r.spec, &[], &node)
        } else {
            let r: gleaner::control::crd::types::ClusterGleanerPipeline =
                serde_json::from_value(doc.clone()).unwrap();
            let id = gleaner::control::crd::ResourceId {
                namespace: None,
                name,
            };
            gleaner::control::crd::to_pipeline(&id, &r.spec.pipeline, &r.spec.namespaces, &node)
        };
        if let Err(e) = checked {
            panic!("{e}");
        }
    }
}
