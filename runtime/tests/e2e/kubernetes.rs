//! Kubernetes nodes: CRI log files as kubelet lays them out, with the API
//! played by the fixture server of `k8s_api.rs`, which does on demand what
//! a real server does not: cut a watch mid-stream, compact history at a
//! chosen moment, count every request by kind. What a real kube-apiserver
//! can show is tested against one: Job pods, pod file → first line, a
//! server restart and 410 Expired, RBAC, status writes by many agents
//! (`k8s_real.rs`), files in pod volumes and namespace labels
//! (`k8s_metadata.rs`), pipelines as resources (`k8s_resources.rs`), the
//! cluster's Events (`k8s_events.rs`).

use crate::common::*;

#[test]
fn cri_log_files_are_decoded_with_runtime_time_stream_and_joined_partials() {
    let env = Env::new();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    env.write(
        "pods/default_web-1_0f3c/app/0.log",
        "2024-01-02T03:04:05.000000006Z stdout F ready\n\
         2024-01-02T03:04:06Z stdout P a long \n\
         2024-01-02T05:04:07+02:00 stderr F warn: disk\n\
         2024-01-02T03:04:08Z stdout F line\n\
         garbage\n",
    );
    let config = env.config(&format!(
        r#"  - name: pods
    inputs: [{{ type: file, paths: ["{dir}/*/*/*.log"], format: cri, start_at: beginning }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        dir = env.path("pods").display(),
        out = out.display(),
    ));
    let run = run_once(&config);
    let got: Vec<(String, String, String)> = lines_in(&out.join("events.ndjson"))
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or("").to_owned();
            (s("message"), s("stream"), s("timestamp"))
        })
        .collect();
    let t = |s: &str| s.to_owned();
    assert_eq!(
        got,
        vec![
            (t("ready"), t("stdout"), t("2024-01-02T03:04:05.000000006Z")),
            (
                t("warn: disk"),
                t("stderr"),
                t("2024-01-02T03:04:07.000000000Z")
            ),
            (
                t("a long line"),
                t("stdout"),
                t("2024-01-02T03:04:06.000000000Z")
            ),
            (t("garbage"), t(""), got[3].2.clone()),
        ]
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("lines_malformed=1"));
}

/// Appends CRI lines (`stdout F <text>`) to a pod container's log file.
fn cri_append(env: &Env, pod_dir: &str, container: &str, texts: &[&str]) {
    let rel = format!("pods/{pod_dir}/{container}/0.log");
    let path = env.path(&rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut text = String::new();
    for t in texts {
        text.push_str(&format!("2024-01-02T03:04:05.000000001Z stdout F {t}\n"));
    }
    env.append(&rel, &text);
}

/// A pipeline reading node-1's pods from `api` into `out/events.ndjson`;
/// `extra` adds input keys (indented by 8 spaces).
fn pods_config(env: &Env, api: &crate::k8s_api::ApiServer, extra: &str) -> std::path::PathBuf {
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    env.config(&format!(
        r#"  - name: pods
    inputs:
      - type: kubernetes
        api_server: "{api}"
        node_name: node-1
        pods_dir: "{pods}"
        start_at: beginning
{extra}
    batch: {{ linger: 50ms }}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        api = api.url(),
        pods = env.path("pods").display(),
        out = out.display(),
    ))
}

fn by_message(env: &Env) -> std::collections::BTreeMap<String, serde_json::Value> {
    lines_in(&env.path("out/events.ndjson"))
        .into_iter()
        .map(|e| (e["message"].as_str().unwrap().to_owned(), e))
        .collect()
}

fn wait_messages(env: &Env, n: usize) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut got = Default::default();
    wait_until(&format!("{n} events"), || {
        got = by_message(env);
        got.len() >= n
    });
    got
}

#[test]
fn pods_of_this_node_are_read_with_metadata_through_watch_gone_and_relist() {
    use crate::k8s_api::{ApiServer, pod};
    let api = ApiServer::start();
    let env = Env::new();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    api.add(pod(
        "shop",
        "web-5f7b9-aaaaa",
        "uid-web",
        "node-1",
        &["app", "proxy"],
    ));
    api.add(pod("shop", "other-node", "uid-other", "node-2", &["app"]));
    api.add(pod("kube-system", "dns", "uid-dns", "node-1", &["dns"]));
    cri_append(&env, "shop_web-5f7b9-aaaaa_uid-web", "app", &["web 1"]);
    cri_append(&env, "shop_web-5f7b9-aaaaa_uid-web", "proxy", &["proxy 1"]);
    cri_append(
        &env,
        "shop_other-node_uid-other",
        "app",
        &["never: other node"],
    );
    cri_append(
        &env,
        "kube-system_dns_uid-dns",
        "dns",
        &["never: excluded namespace"],
    );
    let config = pods_config(&env, &api, "        exclude: { namespaces: [kube-system] }");
    let agent = start(&env, &config);
    let got = wait_messages(&env, 2);
    let web = &got["web 1"];
    let tag = |e: &serde_json::Value, k: &str| e[k].as_str().unwrap_or("").to_owned();
    assert_eq!(tag(web, "k8s.namespace"), "shop");
    assert_eq!(tag(web, "k8s.pod.name"), "web-5f7b9-aaaaa");
    assert_eq!(tag(web, "k8s.pod.uid"), "uid-web");
    assert_eq!(tag(web, "k8s.container.name"), "app");
    assert_eq!(tag(web, "k8s.container.image"), "app:1.0");
    assert_eq!(tag(web, "k8s.node.name"), "node-1");
    assert_eq!(tag(web, "k8s.owner.kind"), "Deployment");
    assert_eq!(tag(web, "k8s.owner.name"), "web");
    assert_eq!(tag(web, "k8s.pod.label.app"), "web-5f7b9-aaaaa");
    assert_eq!(tag(web, "stream"), "stdout");
    assert_eq!(tag(&got["proxy 1"], "k8s.container.name"), "proxy");

    // A new pod: its file appears after the pod does.
    api.add(pod("shop", "cart", "uid-cart", "node-1", &["app"]));
    wait_until("a watch is open", || api.watchers() > 0);
    std::thread::sleep(std::time::Duration::from_millis(200));
    cri_append(&env, "shop_cart_uid-cart", "app", &["cart 1"]);
    let got = wait_messages(&env, 3);
    assert_eq!(tag(&got["cart 1"], "k8s.pod.uid"), "uid-cart");

    // A pod deleted right after its last line: still enriched.
    cri_append(&env, "shop_cart_uid-cart", "app", &["cart last"]);
    api.delete("uid-cart");
    let got = wait_messages(&env, 4);
    assert_eq!(tag(&got["cart last"], "k8s.pod.name"), "cart");

    // The watch breaks and history is compacted meanwhile: the agent gets
    // 410 Gone, lists again and picks up the pod added in between; a pod
    // whose name is reused gets its new uid.
    api.break_add_compact(pod("shop", "cart", "uid-cart-2", "node-1", &["app"]));
    wait_until("the agent lists again", || {
        api.state.lock().unwrap().lists >= 2
    });
    cri_append(&env, "shop_cart_uid-cart-2", "app", &["cart again"]);
    cri_append(&env, "shop_web-5f7b9-aaaaa_uid-web", "app", &["web 2"]);
    let got = wait_messages(&env, 6);
    assert_eq!(tag(&got["cart again"], "k8s.pod.uid"), "uid-cart-2");
    assert_eq!(tag(&got["web 2"], "k8s.pod.uid"), "uid-web");
    assert!(!got.keys().any(|m| m.starts_with("never")), "{got:?}");
    stop(agent);
    let s = api.state.lock().unwrap();
    assert_eq!(s.lists, 2, "one list at start, one after 410 Gone");
    assert_eq!(s.gone, 1);
    assert!(s.watches <= 4, "watches: {}", s.watches);
    assert_eq!(s.other, 0);
    assert_eq!(
        lines_in(&env.path("out/events.ndjson")).len(),
        6,
        "no duplicates"
    );
}

#[test]
fn pod_churn_costs_one_watch() {
    use crate::k8s_api::{ApiServer, pod};
    let api = ApiServer::start();
    let env = Env::new();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let pods = knob("GLEANER_K8S_NODE_PODS", 200);
    let secs = knob("GLEANER_K8S_CHURN_SECS", 2);
    for i in 0..pods {
        api.add(pod(
            "churn",
            &format!("base{i}"),
            &format!("base-{i}"),
            "node-1",
            &["app"],
        ));
        cri_append(
            &env,
            &format!("churn_base{i}_base-{i}"),
            "app",
            &[&format!("base {i}")],
        );
    }
    let config = pods_config(&env, &api, "");
    let agent = start(&env, &config);
    wait_until("every base pod read", || {
        lines_in(&out.join("events.ndjson")).len() >= pods
    });
    let cpu0 = crate::docker::cpu_secs(agent.id());
    let t0 = std::time::Instant::now();
    // 50 ticks/s, each adding a pod (which writes a line) and deleting the
    // one added a second earlier: 100 pod events/s.
    let ticks = secs * 50;
    for k in 0..ticks {
        let (name, uid) = (format!("churn{k}"), format!("churn-{k}"));
        api.add(pod("churn", &name, &uid, "node-1", &["app"]));
        cri_append(
            &env,
            &format!("churn_{name}_{uid}"),
            "app",
            &[&format!("churn {k}")],
        );
        if k >= 50 {
            api.delete(&format!("churn-{}", k - 50));
        }
        let next = t0 + std::time::Duration::from_millis(20 * (k as u64 + 1));
        std::thread::sleep(next.saturating_duration_since(std::time::Instant::now()));
    }
    let expected = pods + ticks;
    wait_until("every churned pod read", || {
        lines_in(&out.join("events.ndjson")).len() >= expected
    });
    let wall = t0.elapsed().as_secs_f64();
    let cpu = crate::docker::cpu_secs(agent.id()) - cpu0;
    let rss = std::fs::read_to_string(format!("/proc/{}/status", agent.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .unwrap();
    stop(agent);
    assert_eq!(
        lines_in(&out.join("events.ndjson")).len(),
        expected,
        "every line once"
    );
    let s = api.state.lock().unwrap();
    assert_eq!(
        (s.lists, s.watches, s.other),
        (1, 1, 0),
        "one list and one watch"
    );
    eprintln!(
        "{pods} pods + {ticks} churn ticks (2 events each) in {wall:.1} s: API requests {} list + {} watch; agent CPU {cpu:.2} s ({:.0}% of a core), peak RSS {} MiB",
        s.lists,
        s.watches,
        cpu / wall * 100.0,
        rss / 1024
    );
}

/// A `GleanerPipeline` (or, with `namespace: None`, a
/// `ClusterGleanerPipeline`) object as kubectl would send it.
/// A free local port (bound and released; the agent binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on the agent's API: (status, body).
pub fn api_get(port: u16, path: &str) -> (u16, String) {
    api_call(port, "GET", path)
}

/// `method path` on the agent's API: (status, body).
pub fn api_call(port: u16, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // A generous limit: an API that never answers fails the test, not hangs it.
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
