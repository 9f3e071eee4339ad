//! Kubernetes discovery against a real kube-apiserver (the kit in
//! `../shared/k8s`, see `k8s_kit.rs`): short-lived Job pods, pod file →
//! first line latency, and an API server restarted under the agent.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::k8s_kit::{Kit, bound_pod};

/// An agent reading node-1's pods through `kit` into `out/events.ndjson`,
/// with the API at `127.0.0.1:api_port`.
fn agent(env: &Env, kit: &Kit, api_port: u16) -> Child {
    agent_with(env, kit, api_port, "")
}

/// [`agent`] with more input keys `extra` (lines indented by 8 spaces).
pub fn agent_with(env: &Env, kit: &Kit, api_port: u16, extra: &str) -> Child {
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = env.config_with(
        &format!("api: {{ address: \"127.0.0.1:{api_port}\" }}"),
        &format!(
            r#"
  - name: pods
    inputs:
      - type: kubernetes
        node_name: node-1
        pods_dir: "{pods}"
        start_at: beginning
{extra}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
            pods = env.path("pods").display(),
            out = out.display(),
        ),
    );
    run_as(env, &config, &kit.kubeconfig())
}

/// `gleaner run` on `config` with `kubeconfig`, logging to `agent.log`.
pub fn run_as(env: &Env, config: &Path, kubeconfig: &Path) -> Child {
    let log = std::fs::File::create(env.path("agent.log")).unwrap();
    gleaner()
        .args(["run", "--config"])
        .arg(config)
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// A kit with namespace `ns`, and an agent (its API on the port
/// returned) that has listed node-1's pods.
fn running(ns: &str) -> (Kit, Env, u16, Reaper) {
    let kit = Kit::start();
    kit.namespace(ns);
    let env = Env::new();
    std::fs::create_dir_all(env.path("pods")).unwrap();
    let port = crate::kubernetes::free_port();
    let agent = Reaper(Some(agent(&env, &kit, port)));
    wait_until("the agent listed the pods", || {
        env.log().contains("Listed this node's pods.")
    });
    (kit, env, port, agent)
}

/// Appends CRI lines `texts` to `ns/pod/uid`'s container `main`, as
/// kubelet writes them.
pub fn cri_write(env: &Env, ns: &str, pod: &str, uid: &str, texts: impl Iterator<Item = String>) {
    let dir = env.path(&format!("pods/{ns}_{pod}_{uid}/main"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("0.log"))
        .unwrap();
    let mut text = String::new();
    for t in texts {
        text.push_str("2026-01-02T03:04:05.000000001Z stdout F ");
        text.push_str(&t);
        text.push('\n');
    }
    f.write_all(text.as_bytes()).unwrap();
}

/// A pod of `ns` on node-1 owned by `owner`, whose container has written
/// `line`.
fn pod_saying(kit: &Kit, env: &Env, ns: &str, name: &str, owner: (&str, &str), line: &str) {
    let uid = kit.create_pod(ns, bound_pod(name, "node-1", owner));
    cri_write(env, ns, name, &uid, std::iter::once(line.to_owned()));
}

pub fn count_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// The issue's seed: Jobs whose pods live about 200 ms. Each pod is
/// created, writes its lines in two halves 100 ms apart, and is deleted
/// with grace period 0 right after the last. Every line arrives once with
/// its own pod's metadata, including pods whose deletion reached the agent
/// before it had opened their file.
#[test]
fn short_lived_job_pods_deliver_every_line_with_their_metadata() {
    let pods = knob("GLEANER_JOB_PODS", 100);
    let lines = 1000;
    let (kit, env, _, mut agent) = running("jobs");
    let mut uids = HashMap::new();
    let started = Instant::now();
    for i in 0..pods {
        let name = format!("batch-{i}");
        let uid = kit.create_pod("jobs", bound_pod(&name, "node-1", ("Job", &name)));
        let text = |r: std::ops::Range<usize>| -> Vec<String> {
            r.map(|n| format!("{name} line {n}")).collect()
        };
        cri_write(&env, "jobs", &name, &uid, text(0..lines / 2).into_iter());
        std::thread::sleep(Duration::from_millis(100));
        cri_write(
            &env,
            "jobs",
            &name,
            &uid,
            text(lines / 2..lines).into_iter(),
        );
        kit.delete_pod_now("jobs", &name);
        uids.insert(name, uid);
    }
    let churn = started.elapsed();
    let events = env.path("out/events.ndjson");
    wait_until("every line delivered", || {
        count_lines(&events) >= pods * lines
    });
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
    let got = lines_in(&events);
    assert_eq!(got.len(), pods * lines, "nothing repeated");
    let mut per_pod: HashMap<String, Vec<u32>> = HashMap::new();
    for e in &got {
        let pod = e["k8s.pod.name"].as_str().unwrap().to_owned();
        let message = e["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{pod} line ")), "{e}");
        assert_eq!(e["k8s.pod.uid"], uids[&pod], "{e}");
        assert_eq!(e["k8s.namespace"], "jobs");
        assert_eq!(e["k8s.owner.kind"], "Job", "{e}");
        assert_eq!(e["k8s.owner.name"], pod.as_str());
        assert_eq!(e["k8s.container.name"], "main");
        let n = message.rsplit(' ').next().unwrap().parse().unwrap();
        per_pod.entry(pod).or_default().push(n);
    }
    assert_eq!(per_pod.len(), pods);
    for (pod, mut ns) in per_pod {
        ns.sort_unstable();
        assert_eq!(ns, (0..lines as u32).collect::<Vec<_>>(), "{pod}");
    }
    eprintln!(
        "{pods} Job pods of {lines} lines each, created and deleted in {:.1} s: {} lines with metadata",
        churn.as_secs_f64(),
        pods * lines
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Waits for `marker` in the output; the time from `since`.
fn first_seen(events: &Path, marker: &str, since: Instant) -> f64 {
    let mut at = 0.0;
    wait_until(&format!("`{marker}` delivered"), || {
        let found = std::fs::read_to_string(events).is_ok_and(|t| t.contains(marker));
        at = since.elapsed().as_secs_f64();
        found
    });
    at
}

/// Pod created, then its log file a moment later (kubelet starts the
/// container after the pod is bound) → its first line in the output,
/// over `GLEANER_K8S_PODS` pods (100); then the API server is restarted
/// under the agent (its watch gets 410 Expired and relists at once) and a
/// pod created right after it is back is timed the same way. Prints the
/// figures; asserts that every line came once with its pod's metadata and
/// that the agent relisted after the restart.
#[test]
fn pod_file_to_first_line_on_a_real_api_server_and_across_its_restart() {
    let n = knob("GLEANER_K8S_PODS", 100);
    let (kit, env, port, mut agent) = running("web");
    let events = env.path("out/events.ndjson");
    let mut latencies = Vec::new();
    for i in 0..n {
        let name = format!("web-{i}");
        let uid = kit.create_pod(
            "web",
            bound_pod(&name, "node-1", ("ReplicaSet", "web-5f7b9")),
        );
        std::thread::sleep(Duration::from_millis(20));
        let written = Instant::now();
        cri_write(
            &env,
            "web",
            &name,
            &uid,
            std::iter::once(format!("hello from {name}.")),
        );
        latencies.push(first_seen(&events, &format!("hello from {name}."), written));
    }
    latencies.sort_by(f64::total_cmp);

    let resyncs = || {
        let (_, m) = crate::kubernetes::api_get(port, "/metrics");
        m.lines()
            .find(|l| l.starts_with("gleaner_discovery_resyncs_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = resyncs();
    // Other nodes' pods change the cluster's revision but not what this
    // agent watches, so its resourceVersion falls behind, as on any busy
    // cluster: the restarted server's watch cache, which starts at etcd's
    // current revision, answers its resumed watch with 410 Expired.
    kit.create_pod(
        "web",
        bound_pod("elsewhere", "node-2", ("ReplicaSet", "web-5f7b9")),
    );
    let restart = Instant::now();
    kit.restart_apiserver();
    let down = restart.elapsed();
    let created = Instant::now();
    pod_saying(
        &kit,
        &env,
        "web",
        "after",
        ("ReplicaSet", "web-5f7b9"),
        "hello after the restart.",
    );
    let after = first_seen(&events, "hello after the restart.", created);
    wait_until("a relist after the restart", || resyncs() > before);
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());

    let got = lines_in(&events);
    assert_eq!(got.len(), n + 1, "each line once");
    for e in &got {
        let pod = e["k8s.pod.name"].as_str().unwrap();
        let expected = if pod == "after" {
            "hello after the restart.".to_owned()
        } else {
            format!("hello from {pod}.")
        };
        assert_eq!(e["message"], expected, "{e}");
        assert_eq!(e["k8s.owner.kind"], "Deployment", "{e}");
        assert_eq!(e["k8s.owner.name"], "web");
    }
    eprintln!(
        "pod file → first line over {n} pods (real API server, batch linger 200 ms): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; \
         API server restarted in {:.1} s, then pod created → first line {:.0} ms",
        percentile(&latencies, 0.5) * 1e3,
        percentile(&latencies, 0.99) * 1e3,
        latencies[latencies.len() - 1] * 1e3,
        down.as_secs_f64(),
        after * 1e3
    );
}

/// `kubectl apply -f deploy/kubernetes/` on an empty cluster works as the
/// files come (numbered: the Namespace first), and the agent's
/// ServiceAccount may do exactly what the agent does, checked by the API
/// server's own authorizer (`kubectl auth can-i --as`: a
/// SubjectAccessReview of the impersonated account).
#[test]
fn manifests_apply_in_order_and_grant_exactly_what_the_agent_uses() {
    let kit = Kit::start();
    let dir = workspace().join("deploy/kubernetes");
    let applied = kit.kubectl(&["apply", "-f", dir.to_str().unwrap()]);
    for made in [
        "namespace/gleaner created",
        "customresourcedefinition.apiextensions.k8s.io/gleanerpipelines.gleaner.io created",
        "serviceaccount/gleaner created",
        "clusterrole.rbac.authorization.k8s.io/gleaner created",
        "configmap/gleaner created",
        "daemonset.apps/gleaner created",
    ] {
        assert!(applied.contains(made), "{made}: {applied}");
    }
    let sa = "system:serviceaccount:gleaner:gleaner";
    let allowed = [
        ("list", "pods"),
        ("watch", "pods"),
        ("list", "namespaces"),
        ("watch", "namespaces"),
        ("list", "events"),
        ("watch", "events"),
        ("list", "gleanerpipelines.gleaner.io"),
        ("watch", "gleanerpipelines.gleaner.io"),
        ("list", "clustergleanerpipelines.gleaner.io"),
        ("watch", "clustergleanerpipelines.gleaner.io"),
        ("patch", "gleanerpipelines.gleaner.io/status"),
        ("patch", "clustergleanerpipelines.gleaner.io/status"),
    ];
    let denied = [
        ("get", "pods"),
        ("create", "pods"),
        ("delete", "pods"),
        ("get", "pods/log"),
        ("get", "events"),
        ("create", "events"),
        ("get", "secrets"),
        ("list", "configmaps"),
        ("get", "nodes"),
        ("update", "gleanerpipelines.gleaner.io/status"),
        ("patch", "gleanerpipelines.gleaner.io"),
        ("create", "gleanerpipelines.gleaner.io"),
        ("get", "leases.coordination.k8s.io"),
    ];
    for (verb, resource) in allowed {
        assert!(
            kit.can_i(sa, verb, resource),
            "{sa} may not {verb} {resource}"
        );
    }
    for (verb, resource) in denied {
        assert!(!kit.can_i(sa, verb, resource), "{sa} may {verb} {resource}");
    }
    // Its Leases, in its own namespace only.
    for lease in [
        "leases.coordination.k8s.io/gleaner-pipeline-status",
        "leases.coordination.k8s.io/gleaner-events",
    ] {
        for verb in ["get", "update"] {
            assert!(kit.can_i_in(sa, verb, lease, "gleaner"), "{verb} {lease}");
            assert!(!kit.can_i_in(sa, verb, lease, "default"), "{verb} {lease}");
        }
    }
    let lease = "leases.coordination.k8s.io/gleaner-pipeline-status";
    assert!(kit.can_i_in(sa, "create", "leases.coordination.k8s.io", "gleaner"));
    assert!(!kit.can_i_in(sa, "delete", lease, "gleaner"));
    assert!(!kit.can_i_in(sa, "get", "leases.coordination.k8s.io/other", "gleaner"));

    // The agent itself, as that ServiceAccount (its token, no more):
    // pods with namespace labels read, a pipeline resource accepted and
    // its status written; nothing refused.
    let token = kit.kubectl(&["-n", "gleaner", "create", "token", "gleaner"]);
    let env = Env::new();
    let kubeconfig = env.write(
        "sa.kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: kit, cluster: {{server: \"{url}\", certificate-authority: \"{ca}\"}}}}]\n\
             users: [{{name: gleaner, user: {{token: \"{token}\"}}}}]\n\
             contexts: [{{name: kit, context: {{cluster: kit, user: gleaner}}}}]\ncurrent-context: kit\n",
            url = kit.env["APISERVER_URL"],
            ca = kit.env["CA_FILE"],
            token = token.trim()
        ),
    );
    kit.namespace("shop");
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = env.config_with(
        &format!(
            "pipeline_resources: {{ node_name: node-1, pods_dir: \"{}\" }}",
            env.path("pods").display()
        ),
        &format!(
            r#"
  - name: pods
    inputs:
      - {{ type: kubernetes, node_name: node-1, pods_dir: "{pods}", start_at: beginning, namespace_label_tags: true }}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
  - name: cluster-events
    inputs:
      - {{ type: kubernetes_events, lease: gleaner-events, lease_namespace: gleaner, identity: node-1, namespaces: [shop] }}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/k8s-events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
            pods = env.path("pods").display(),
            out = out.display()
        ),
    );
    let _: k8s_openapi::api::core::v1::Event = kit.create(
        "shop",
        serde_json::json!({
            "metadata": {"name": "checkout-1.started"},
            "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "checkout-1"},
            "reason": "Started", "message": "Started container main", "type": "Normal"
        }),
    );
    pod_saying(
        &kit,
        &env,
        "shop",
        "checkout-1",
        ("Job", "checkout"),
        "paid.",
    );
    let resource = env.write(
        "glp.yaml",
        "apiVersion: gleaner.io/v1alpha1\nkind: GleanerPipeline\nmetadata: { name: checkout, namespace: shop }\n\
         spec:\n  selector: { matchLabels: { app: checkout-1 } }\n  flushers:\n\
         \x20   - plugin: builtin:http\n      config: { url: \"http://127.0.0.1:9/ingest\" }\n\
         \x20     grants: { hosts: [\"127.0.0.1:9\"] }\n",
    );
    kit.kubectl(&["apply", "-f", resource.to_str().unwrap()]);
    let mut agent = Reaper(Some(run_as(&env, &config, &kubeconfig)));
    wait_until("the pod's line delivered", || {
        count_lines(&out.join("events.ndjson")) >= 1
    });
    let accepted = || {
        kit.glp(
            "shop",
            "checkout",
            "{.status.conditions[?(@.type==\"Accepted\")].status}",
        )
    };
    wait_until("the resource's status written", || accepted() == "True");
    wait_until("the Event of namespace shop shipped", || {
        count_lines(&out.join("k8s-events.ndjson")) >= 1
    });
    let (status, _) = agent.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
    let e = &lines_in(&out.join("events.ndjson"))[0];
    assert_eq!(e["message"], "paid.");
    assert_eq!(
        e["k8s.namespace.label.kubernetes.io/metadata.name"], "shop",
        "{e}"
    );
    let e = &lines_in(&out.join("k8s-events.ndjson"))[0];
    assert_eq!(e["message"], "Started container main");
    assert_eq!(e["k8s.object.name"], "checkout-1");
    let log = env.log();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "{log}"
    );
}

/// Twenty agents (twenty node names) on one cluster, one GleanerPipeline
/// changed twice: how many status writes each generation costs, counted
/// by the API server's audit log. Agents that agree write nothing (they
/// see the condition already there); a Lease elects the one agent that
/// writes an accepted verdict, so the count stays one per generation
/// however many nodes run.
#[test]
fn twenty_agents_write_one_status_per_generation() {
    let agents = knob("GLEANER_STATUS_AGENTS", 20);
    let dir = tempfile::tempdir().unwrap();
    let kit = Kit::audited(&[
        "verbs: [patch, update], resources: [{group: gleaner.io, resources: [gleanerpipelines/status]}]",
    ]);
    let status_patches = || {
        kit.audit_log(|e| e["verb"] == "patch" && e["objectRef"]["subresource"] == "status")
            .len()
    };
    kit.kubectl(&[
        "apply",
        "-f",
        workspace()
            .join("deploy/kubernetes/10-crd.yaml")
            .to_str()
            .unwrap(),
    ]);
    kit.namespace("gleaner");
    kit.namespace("shop");
    let resource = |generation_note: &str| {
        let p = dir.path().join("glp.yaml");
        std::fs::write(
            &p,
            format!(
                "apiVersion: gleaner.io/v1alpha1\nkind: GleanerPipeline\nmetadata: {{ name: checkout, namespace: shop }}\n\
                 spec:\n  selector: {{ matchLabels: {{ app: checkout, note: \"{generation_note}\" }} }}\n  flushers:\n\
                 \x20   - plugin: builtin:http\n      config: {{ url: \"http://127.0.0.1:9/ingest\" }}\n\
                 \x20     grants: {{ hosts: [\"127.0.0.1:9\"] }}\n"
            ),
        )
        .unwrap();
        kit.kubectl(&["apply", "-f", p.to_str().unwrap()]);
    };
    resource("one");
    let observed = || kit.glp("shop", "checkout", "{.status.observedGeneration}");
    // GLEANER_LEASE_NS=missing measures agents without a usable Lease
    // (every agent writes; the assertion then fails with the count).
    let lease_ns = std::env::var("GLEANER_LEASE_NS").unwrap_or_else(|_| "gleaner".into());
    let mut running = Vec::new();
    let envs: Vec<Env> = (0..agents).map(|_| Env::new()).collect();
    for (i, env) in envs.iter().enumerate() {
        let config = env.config(&format!(
            "  []\npipeline_resources: {{ node_name: node-{i}, pods_dir: \"{}\", lease_namespace: {lease_ns} }}\n",
            env.path("pods").display()
        ));
        running.push(Reaper(Some(run_as(env, &config, &kit.kubeconfig()))));
    }
    wait_until("generation 1 accepted", || observed() == "1");
    wait_until("every agent runs the resource's pipeline", || {
        envs.iter()
            .all(|e| e.log().contains("Started pipeline. pipeline=shop.checkout"))
    });
    std::thread::sleep(Duration::from_secs(3));
    let first = status_patches();
    resource("two");
    wait_until("generation 2 accepted", || observed() == "2");
    wait_until("every agent runs generation 2", || {
        envs.iter().all(|e| {
            e.log()
                .matches("Started pipeline. pipeline=shop.checkout")
                .count()
                >= 2
        })
    });
    std::thread::sleep(Duration::from_secs(3));
    let second = status_patches() - first;
    for mut a in running {
        let (status, _) = a.sigterm_and_wait();
        assert!(status.success());
    }
    eprintln!("{agents} agents: {first} status writes for generation 1, {second} for generation 2");
    assert_eq!((first, second), (1, 1));
}
