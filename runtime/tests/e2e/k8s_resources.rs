//! Pipelines as resources on a real kube-apiserver (the kit, see
//! `k8s_kit.rs`, with the CRDs of `deploy/kubernetes/10-crd.yaml`):
//! created, changed, made invalid and deleted with kubectl while a config
//! file's pipeline runs untouched beside them.

use serde_json::{Value, json};

use crate::common::*;
use crate::http_sink::Sink;
use crate::k8s_kit::{Kit, bound_pod};
use crate::k8s_real::{count_lines, cri_write, run_as};

fn pipeline_resource(namespace: Option<&str>, name: &str, spec: Value) -> Value {
    let kind = if namespace.is_some() {
        "GleanerPipeline"
    } else {
        "ClusterGleanerPipeline"
    };
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": "gleaner.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec})
}

/// `kubectl apply` of `resource` (JSON).
fn apply(kit: &Kit, env: &Env, resource: &Value) {
    let file = env.write("resource.json", &resource.to_string());
    kit.kubectl(&["apply", "-f", file.to_str().unwrap()]);
}

/// The `Accepted` condition of `plural` `name` (in `ns`): status, reason,
/// message and the observed generation.
fn accepted(
    kit: &Kit,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> (String, String, String, i64) {
    let mut args = vec!["get", plural, name, "-o", "json"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let r: Value = serde_json::from_str(&kit.kubectl(&args)).unwrap();
    let c = r["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Accepted"))
        .cloned()
        .unwrap_or_default();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    (
        s("status"),
        s("reason"),
        s("message"),
        r["status"]["observedGeneration"].as_i64().unwrap_or(0),
    )
}

#[test]
fn pipelines_come_from_resources_live_and_invalid_ones_change_nothing() {
    let kit = Kit::audited(&[
        "verbs: [list, watch], resources: [{group: gleaner.io, resources: [gleanerpipelines, clustergleanerpipelines]}]",
    ]);
    let crd = workspace().join("deploy/kubernetes/10-crd.yaml");
    kit.kubectl(&["apply", "-f", crd.to_str().unwrap()]);
    kit.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/gleanerpipelines.gleaner.io",
        "crd/clustergleanerpipelines.gleaner.io",
    ]);
    kit.namespace("shop");
    kit.namespace("blog");
    let sink = Sink::start(&[]);
    let env = Env::new();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let mut uids = std::collections::HashMap::new();
    for (ns, name, tier) in [
        ("shop", "web-5f7b9-aaaaa", "front"),
        ("shop", "db-5f7b9-bbbbb", "back"),
        ("blog", "web-5f7b9-ccccc", "front"),
    ] {
        let mut pod = bound_pod(name, "node-1", ("ReplicaSet", "x-5f7b9"));
        pod["metadata"]["labels"]["tier"] = tier.into();
        let uid = kit.create_pod(ns, pod);
        let first = format!("{ns} {} 1", &name[..name.find('-').unwrap()]);
        cri_write(&env, ns, name, &uid, std::iter::once(first));
        uids.insert(name, uid);
    }
    let shop_web = |line: &str| {
        cri_write(
            &env,
            "shop",
            "web-5f7b9-aaaaa",
            &uids["web-5f7b9-aaaaa"],
            std::iter::once(line.to_owned()),
        )
    };
    env.write("host.log", "host 1\n");
    let config = env.config(&format!(
        r#"  - name: host
    inputs: [{{ type: file, paths: ["{host}"], start_at: beginning }}]
    batch: {{ linger: 20ms }}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/host.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
pipeline_resources:
  node_name: node-1
  pods_dir: "{pods}"
"#,
        host = env.path("host.log").display(),
        out = out.display(),
        pods = env.path("pods").display(),
    ));
    let mut agent = Reaper(Some(run_as(&env, &config, &kit.kubeconfig())));
    let sink_messages = || -> Vec<(String, String)> {
        let mut m: Vec<(String, String)> = sink
            .events()
            .iter()
            .map(|e| {
                (
                    e["message"].as_str().unwrap_or_default().to_owned(),
                    e["version"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        m.sort();
        m
    };
    let flusher = json!({
        "plugin": "builtin:http",
        "config": {"url": format!("http://{}/", sink.addr)},
        "grants": {"hosts": [sink.addr.to_string()]},
        "on_error": {"backoff": "20ms", "max_backoff": "100ms"}
    });
    let front = |version: Option<&str>| {
        let mut spec = json!({
            "selector": {"matchLabels": {"tier": "front"}},
            "input": {"start_at": "beginning"},
            "batch": {"linger": "20ms"},
            "flushers": [flusher.clone()]
        });
        if let Some(v) = version {
            spec["processors"] =
                json!([{"plugin": "builtin:add-fields", "config": {"fields": {"version": v}}}]);
        }
        pipeline_resource(Some("shop"), "front", spec)
    };
    let glp = |name: &str| accepted(&kit, "gleanerpipelines", Some("shop"), name);

    // 1. A resource appears: only its namespace's selected pods are read.
    apply(&kit, &env, &front(None));
    wait_until("shop web 1 delivered", || sink_messages().len() == 1);
    assert_eq!(sink_messages(), vec![("shop web 1".into(), "".into())]);
    assert_eq!(sink.events()[0]["k8s.pod.name"], "web-5f7b9-aaaaa");
    wait_until("Accepted=True", || glp("front").0 == "True");
    // The requests so far: an API server may close a watch of a CRD just
    // made Established when it updates the CRD (the agent then watches
    // again from where it was); from here on, changes cost none.
    let count = |verb: &str, resource: &str| kit.agent_requests(verb, resource).len();
    let kinds = ["gleanerpipelines", "clustergleanerpipelines"];
    let requests = || kinds.map(|kind| (count("list", kind), count("watch", kind)));
    let before = requests();
    assert_eq!(
        before.map(|(lists, _)| lists),
        [1, 1],
        "one list of each kind"
    );
    assert_eq!(
        glp("front"),
        (
            "True".into(),
            "Running".into(),
            "running as pipeline `shop.front`".into(),
            1
        )
    );

    // 2. An invalid resource gets a condition and changes nothing.
    apply(
        &kit,
        &env,
        &pipeline_resource(
            Some("shop"),
            "bad",
            json!({"flushers": [{"plugin": "/usr/lib/evil.wasm"}]}),
        ),
    );
    wait_until("Accepted=False", || glp("bad").0 == "False");
    assert_eq!(
        glp("bad"),
        (
            "False".into(),
            "InvalidSpec".into(),
            "spec.flushers[0].plugin: `/usr/lib/evil.wasm`: a GleanerPipeline may only use builtin: plugins (plugin files need a ClusterGleanerPipeline)".into(),
            1
        )
    );

    // 3. A processor change is swapped in at a batch boundary, touching
    //    only this pipeline: nothing read twice, new lines go through the
    //    new version.
    apply(&kit, &env, &front(Some("2")));
    env.wait_log("change=Swapped", 1);
    shop_web("shop web 2");
    env.append("host.log", "host 2\n");
    wait_until("shop web 2 delivered", || sink_messages().len() == 2);
    assert_eq!(
        sink_messages(),
        vec![
            ("shop web 1".into(), "".into()),
            ("shop web 2".into(), "2".into())
        ]
    );
    wait_until("generation 2 accepted", || glp("front").3 == 2);

    // 4. Made invalid: the running version stays and keeps delivering.
    let mut broken = front(Some("3"));
    broken["spec"]["selector"] =
        json!({"matchExpressions": [{"key": "tier", "operator": "Maybe"}]});
    apply(&kit, &env, &broken);
    wait_until("generation 3 rejected", || glp("front").3 == 3);
    let (status, reason, message, _) = glp("front");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        message.starts_with("spec.selector: matchExpressions[0]: unknown operator `Maybe`"),
        "{message}"
    );
    shop_web("shop web 3");
    wait_until("shop web 3 delivered", || sink_messages().len() == 3);
    assert_eq!(sink_messages()[2], ("shop web 3".into(), "2".into()));

    // 5. A cluster resource reads across namespaces, and may write files.
    apply(
        &kit,
        &env,
        &pipeline_resource(
            None,
            "all-front",
            json!({
                "namespaces": ["shop", "blog"],
                "selector": {"matchLabels": {"tier": "front"}},
                "input": {"start_at": "beginning"},
                "batch": {"linger": "20ms"},
                "flushers": [{"plugin": "builtin:file", "config": {"path": format!("{}/cluster.ndjson", out.display())}, "grants": {"dirs": [out.display().to_string()]}}]
            }),
        ),
    );
    let cluster_messages = || -> Vec<String> {
        let mut m: Vec<String> = lines_in(&out.join("cluster.ndjson"))
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
            .collect();
        m.sort();
        m
    };
    wait_until("cluster pipeline delivered", || {
        cluster_messages().len() == 4
    });
    assert_eq!(
        cluster_messages(),
        vec!["blog web 1", "shop web 1", "shop web 2", "shop web 3"]
    );
    wait_until("the cluster resource accepted", || {
        accepted(&kit, "clustergleanerpipelines", None, "all-front").0 == "True"
    });

    // 6. Deleted: its pipeline stops; the others go on.
    kit.kubectl(&["-n", "shop", "delete", "gleanerpipelines", "front"]);
    env.wait_log("Pipeline removed.", 1);
    shop_web("shop web 4");
    env.append("host.log", "host 3\n");
    wait_until("cluster pipeline got line 4", || {
        cluster_messages().len() == 5
    });
    wait_until("host 3", || count_lines(&out.join("host.ndjson")) == 3);
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
    let log_text = env.log();
    assert_eq!(sink_messages().len(), 3, "nothing after the delete");
    let host: Vec<String> = lines_in(&out.join("host.ndjson"))
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(host, vec!["host 1", "host 2", "host 3"]);
    // The config file's pipeline was never restarted.
    assert_eq!(starts(&log_text, "host"), 1, "{log_text}");
    // Five changes later: not one more list or watch.
    assert_eq!(requests(), before, "{kinds:?}");
}
