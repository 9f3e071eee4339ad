//! A real Kubernetes API server for the tests: kube-apiserver and etcd
//! from the kit in `../shared/k8s` (or `GLEANER_K8S_KIT`), started in a
//! state directory of the test's own and stopped when dropped. There is
//! no kubelet: the tests create pods bound to a node (`spec.nodeName`),
//! write their log files as kubelet lays them out, and delete them with a
//! grace period of 0 (nothing would confirm a graceful delete).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};

use crate::common::workspace;

/// Where the kit is: `GLEANER_K8S_KIT`, else `../shared/k8s` beside the
/// checkout, else `/work/shared/k8s` (where this workplace keeps it, for a
/// clone made elsewhere).
pub fn kit_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("GLEANER_K8S_KIT") {
        return Some(PathBuf::from(dir));
    }
    [
        workspace().join("../shared/k8s"),
        PathBuf::from("/work/shared/k8s"),
    ]
    .into_iter()
    .find(|d| d.join("start.sh").is_file())
}

/// A namespaced object the kit's client reads and writes.
pub trait Object:
    kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::Serialize
    + serde::de::DeserializeOwned
{
}

impl<K> Object for K where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned
{
}

/// One running API server.
pub struct Kit {
    kit: PathBuf,
    state: tempfile::TempDir,
    /// `STATE/env`: APISERVER_URL, KUBECONFIG, K8S_BIN, ...
    pub env: BTreeMap<String, String>,
    rt: tokio::runtime::Runtime,
    client: Client,
    /// With [`Kit::audited`]: the directory of the audit policy and log.
    audit: Option<tempfile::TempDir>,
}

impl Kit {
    /// Starts a kit; fails the test, naming what is missing, without one.
    pub fn start() -> Kit {
        Kit::start_with("")
    }

    /// [`Kit::start`] with an audit log (level Metadata) of the requests
    /// each of `rules` matches: an audit policy rule's keys besides
    /// `level`, e.g. `verbs: [list, watch], resources: [{group: "",
    /// resources: [pods]}]`; see [`Kit::audit_log`].
    pub fn audited(rules: &[&str]) -> Kit {
        let dir = tempfile::tempdir().unwrap();
        let mut policy = String::from(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n",
        );
        for r in rules {
            policy.push_str(&format!("- {{level: Metadata, {r}}}\n"));
        }
        policy.push_str("- level: None\n");
        std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
        let mut kit = Kit::start_with(&format!(
            "--audit-policy-file={} --audit-log-path={}",
            dir.path().join("policy.yaml").display(),
            dir.path().join("audit.log").display()
        ));
        kit.audit = Some(dir);
        kit
    }

    /// The requests the audit log holds so far that `keep` keeps, one
    /// entry per request (a watch logs a stage when it starts and one when
    /// it ends: the last is kept).
    pub fn audit_log(&self, keep: impl Fn(&serde_json::Value) -> bool) -> Vec<serde_json::Value> {
        let dir = self.audit.as_ref().expect("a kit started by Kit::audited");
        let text = std::fs::read_to_string(dir.path().join("audit.log")).unwrap_or_default();
        let by_id: BTreeMap<String, serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| keep(e))
            .filter_map(|e| Some((e["auditID"].as_str()?.to_owned(), e)))
            .collect();
        by_id.into_values().collect()
    }

    /// The agent's `verb` requests of `resource` in the audit log: those
    /// of the kit's admin (the agent's kubeconfig), not kubectl's, nor the
    /// API server's own watches.
    pub fn agent_requests(&self, verb: &str, resource: &str) -> Vec<serde_json::Value> {
        self.audit_log(|e| {
            e["verb"] == verb
                && e["objectRef"]["resource"] == resource
                && e["user"]["username"] == "admin"
                && !e["userAgent"].as_str().unwrap_or("").starts_with("kubectl")
        })
    }

    /// [`Kit::start`] with more kube-apiserver flags.
    pub fn start_with(apiserver_args: &str) -> Kit {
        let kit = kit_dir().expect(
            "no Kubernetes kit: set GLEANER_K8S_KIT to a directory with start.sh \
             (kube-apiserver + etcd), or put it at ../shared/k8s",
        );
        let state = tempfile::tempdir().unwrap();
        let out = Command::new(kit.join("start.sh"))
            .arg(state.path())
            .env("APISERVER_EXTRA_ARGS", apiserver_args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the kit did not start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = read_env(&state.path().join("env"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig = Kubeconfig::read_from(&env["KUBECONFIG"]).unwrap();
        let client = rt.block_on(async {
            let config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .unwrap();
            Client::try_from(config).unwrap()
        });
        Kit {
            kit,
            state,
            env,
            rt,
            client,
            audit: None,
        }
    }

    /// The admin kubeconfig (for the agent's `KUBECONFIG`).
    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(&self.env["KUBECONFIG"])
    }

    /// Runs the kit's kubectl; its stdout (fails the test on an error).
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.try_kubectl(args)
            .unwrap_or_else(|e| panic!("kubectl {args:?}: {e}"))
    }

    /// Runs the kit's kubectl; its stdout, or its stderr if it failed.
    pub fn try_kubectl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(Path::new(&self.env["K8S_BIN"]).join("kubectl"))
            .env("KUBECONFIG", self.kubeconfig())
            .args(args)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Whether `user` may `verb` `resource` (`pods`, `pods/log`: a
    /// subresource) in every namespace, as the API server's authorizer
    /// answers (`kubectl auth can-i --as`).
    pub fn can_i(&self, user: &str, verb: &str, resource: &str) -> bool {
        let mut args = vec!["--all-namespaces"];
        match resource.split_once('/') {
            Some((r, sub)) => args.extend([r, "--subresource", sub]),
            None => args.push(resource),
        }
        self.ask(user, verb, &args)
    }

    /// Whether `user` may `verb` `resource` (`TYPE` or `TYPE/NAME`) in
    /// namespace `ns`.
    pub fn can_i_in(&self, user: &str, verb: &str, resource: &str, ns: &str) -> bool {
        self.ask(user, verb, &[resource, "-n", ns])
    }

    fn ask(&self, user: &str, verb: &str, args: &[&str]) -> bool {
        let out = Command::new(Path::new(&self.env["K8S_BIN"]).join("kubectl"))
            .env("KUBECONFIG", self.kubeconfig())
            .args(["auth", "can-i", verb, "--as", user])
            .args(args)
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            answer == "yes" || answer == "no",
            "kubectl auth can-i {verb} {args:?}: {answer} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        answer == "yes"
    }

    /// Creates namespace `ns` and its `default` ServiceAccount (no
    /// controller-manager makes it here).
    pub fn namespace(&self, ns: &str) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let sa: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        self.rt.block_on(async {
            let n: Namespace = serde_json::from_value(serde_json::json!({
                "metadata": {"name": ns}
            }))
            .unwrap();
            namespaces.create(&PostParams::default(), &n).await.unwrap();
            let a: ServiceAccount = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "default"}
            }))
            .unwrap();
            sa.create(&PostParams::default(), &a).await.unwrap();
        });
    }

    /// Field `jsonpath` of GleanerPipeline `ns/name`.
    pub fn glp(&self, ns: &str, name: &str, jsonpath: &str) -> String {
        let path = format!("jsonpath={jsonpath}");
        self.kubectl(&["-n", ns, "get", "glp", name, "-o", &path])
    }

    /// Creates `pod` (a JSON Pod) in `ns`; its uid.
    pub fn create_pod(&self, ns: &str, pod: serde_json::Value) -> String {
        self.create::<Pod>(ns, pod).metadata.uid.unwrap()
    }

    /// Creates `object` (JSON of a `K`) in `ns`; the object as made.
    pub fn create<K: Object>(&self, ns: &str, object: serde_json::Value) -> K {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let object: K = serde_json::from_value(object).unwrap();
        self.rt
            .block_on(api.create(&PostParams::default(), &object))
            .unwrap()
    }

    /// `K` `name` in `ns`.
    pub fn get<K: Object>(&self, ns: &str, name: &str) -> K {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        self.rt.block_on(api.get(name)).unwrap()
    }

    /// Replaces `object` (as read, changed) in `ns`; the object as stored.
    pub fn replace<K: Object>(&self, ns: &str, object: &K) -> K {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        let name = object.meta().name.clone().unwrap();
        self.rt
            .block_on(api.replace(&name, &PostParams::default(), object))
            .unwrap()
    }

    /// Deletes `K` `name` in `ns`.
    pub fn delete<K: Object>(&self, ns: &str, name: &str) {
        let api: Api<K> = Api::namespaced(self.client.clone(), ns);
        self.rt
            .block_on(api.delete(name, &DeleteParams::default()))
            .unwrap();
    }

    /// Deletes pod `name` at once (grace period 0).
    pub fn delete_pod_now(&self, ns: &str, name: &str) {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        self.rt
            .block_on(api.delete(name, &DeleteParams::default().grace_period(0)))
            .unwrap();
    }

    /// Stops kube-apiserver and starts it again on the same etcd, port and
    /// keys: its watch cache starts at etcd's current revision, so a watch
    /// resumed from before gets 410 Expired.
    pub fn restart_apiserver(&self) {
        let stop = Command::new(self.kit.join("stop.sh"))
            .arg(self.state.path())
            .arg("kube-apiserver")
            .output()
            .unwrap();
        assert!(stop.status.success(), "{stop:?}");
        // The same port, asked for: the kit picks another when it finds
        // the old one busy (connections to it still closing), and the
        // agent's kubeconfig names this one.
        let port = self.env["APISERVER_URL"]
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        let start = Command::new(self.kit.join("start.sh"))
            .arg(self.state.path())
            .env("APISERVER_PORT", port)
            .output()
            .unwrap();
        assert!(start.status.success(), "{start:?}");
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        let _ = Command::new(self.kit.join("stop.sh"))
            .arg(self.state.path())
            .output();
    }
}

fn read_env(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// A pod of `ns` bound to `node` with one container `main`, owned by
/// `owner` (`(kind, name)`).
/// A ReplicaSet's pods carry its `pod-template-hash` label.
pub fn bound_pod(name: &str, node: &str, owner: (&str, &str)) -> serde_json::Value {
    let mut labels = serde_json::json!({"app": name});
    if owner.0 == "ReplicaSet"
        && let Some((_, hash)) = owner.1.rsplit_once('-')
    {
        labels["pod-template-hash"] = hash.into();
    }
    serde_json::json!({
        "metadata": {
            "name": name,
            "labels": labels,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": owner.0, "name": owner.1,
                "uid": "00000000-0000-0000-0000-000000000001", "controller": true}]
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": "busybox:1"}]
        }
    })
}
