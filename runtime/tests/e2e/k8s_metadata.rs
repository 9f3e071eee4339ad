//! Pod metadata from a real kube-apiserver (the kit, see `k8s_kit.rs`):
//! files inside a pod's `emptyDir` volume, and namespace labels as tags
//! that follow a `kubectl label`, with the requests this costs counted by
//! the API server's own audit log.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::common::*;
use crate::k8s_kit::{Kit, bound_pod};
use crate::k8s_real::{agent_with, count_lines, cri_write};
use crate::kubernetes::{api_get, free_port};

fn by_message(env: &Env) -> BTreeMap<String, Value> {
    lines_in(&env.path("out/events.ndjson"))
        .into_iter()
        .map(|e| (e["message"].as_str().unwrap().to_owned(), e))
        .collect()
}

#[test]
fn files_inside_pods_are_read_from_their_volumes_and_the_api_answers_probes() {
    let kit = Kit::start();
    kit.namespace("shop");
    let env = Env::new();
    let mut pod = bound_pod("api-5f7b9-ddddd", "node-1", ("ReplicaSet", "api-5f7b9"));
    pod["spec"]["volumes"] = json!([{"name": "logs", "emptyDir": {}}]);
    pod["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "logs", "mountPath": "/var/log/api"}]);
    let uid = kit.create_pod("shop", pod);
    let volume = format!("kubelet/pods/{uid}/volumes/kubernetes.io~empty-dir/logs");
    env.write(&format!("{volume}/access.log"), "GET /a\nGET /b\n");
    env.write(&format!("{volume}/debug.txt"), "never: not matched\n");
    cri_write(
        &env,
        "shop",
        "api-5f7b9-ddddd",
        &uid,
        std::iter::once("never: stdout is off".to_owned()),
    );
    let port = free_port();
    let mut agent = Reaper(Some(agent_with(
        &env,
        &kit,
        port,
        &format!(
            "        stdout: false\n        paths: [/var/log/api/*.log]\n        kubelet_dir: \"{}\"",
            env.path("kubelet").display()
        ),
    )));
    let out = env.path("out/events.ndjson");
    wait_until("2 lines", || count_lines(&out) >= 2);
    let got = by_message(&env);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["GET /a", "GET /b"]);
    let e = &got["GET /a"];
    assert_eq!(e["k8s.pod.name"], "api-5f7b9-ddddd");
    assert_eq!(e["k8s.pod.uid"], uid.as_str());
    assert_eq!(e["k8s.container.name"], "main");
    assert_eq!(e["k8s.owner.kind"], "Deployment");
    assert_eq!(e["k8s.owner.name"], "api");
    assert!(e.get("stream").is_none(), "a file line has no stream: {e}");
    env.append(&format!("{volume}/access.log"), "GET /c\n");
    wait_until("3 lines", || count_lines(&out) >= 3);

    assert_eq!(api_get(port, "/healthz"), (200, "ok\n".into()));
    assert_eq!(api_get(port, "/readyz"), (200, "ready\n".into()));
    let (status, body) = api_get(port, "/api/v1/pipelines");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    let p = &v["pipelines"][0];
    assert_eq!(v["pipelines"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        (&p["name"], &p["source"], &p["state"], &p["generation"]),
        (
            &"pods".into(),
            &"the config file".into(),
            &"running".into(),
            &0.into()
        ),
        "{v}"
    );
    assert_eq!(p["counters"]["events_delivered"], 3, "{v}");
    assert_eq!(p["inputs"][0]["lines"], 3, "{v}");
    assert_eq!(p["flushers"][0]["plugin"], "builtin:file", "{v}");
    assert_eq!(api_get(port, "/nope").0, 404);
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
    assert_eq!(by_message(&env).len(), 3);
}

#[test]
fn namespace_labels_become_tags_and_follow_changes() {
    let kit = Kit::audited(&[
        r#"verbs: [list, watch], resources: [{group: "", resources: [pods, namespaces]}]"#,
    ]);
    kit.namespace("shop");
    kit.kubectl(&["label", "namespace", "shop", "team=a"]);
    let env = Env::new();
    let name = "web-5f7b9-aaaaa";
    let uid = kit.create_pod(
        "shop",
        bound_pod(name, "node-1", ("ReplicaSet", "web-5f7b9")),
    );
    let write = |n: usize| {
        cri_write(
            &env,
            "shop",
            name,
            &uid,
            std::iter::once(format!("line {n}")),
        )
    };
    write(0);
    let mut agent = Reaper(Some(agent_with(
        &env,
        &kit,
        free_port(),
        "        namespace_label_tags: true",
    )));
    let out = env.path("out/events.ndjson");
    wait_until("the first line", || count_lines(&out) >= 1);
    assert_eq!(by_message(&env)["line 0"]["k8s.namespace.label.team"], "a");
    kit.kubectl(&["label", "namespace", "shop", "team=b", "--overwrite"]);
    // The new tags apply from the next batch on: write until one has them.
    let mut n = 1;
    wait_until("a line tagged team=b", || {
        write(n);
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
        by_message(&env)
            .values()
            .any(|e| e["k8s.namespace.label.team"] == "b")
    });
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
    let teams: Vec<String> = lines_in(&out)
        .iter()
        .map(|e| e["k8s.namespace.label.team"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(teams.len(), n, "every line once");
    let first_b = teams.iter().position(|t| t == "b").unwrap();
    assert!(
        teams[..first_b].iter().all(|t| t == "a") && teams[first_b..].iter().all(|t| t == "b"),
        "{teams:?}"
    );
    let count = |verb: &str, resource: &str| kit.agent_requests(verb, resource).len();
    assert_eq!(
        (count("list", "namespaces"), count("watch", "namespaces")),
        (1, 1),
        "one list and one watch of namespaces: {:#?}",
        kit.agent_requests("watch", "namespaces")
    );
    assert_eq!(
        (count("list", "pods"), count("watch", "pods")),
        (1, 1),
        "and of pods"
    );
}
