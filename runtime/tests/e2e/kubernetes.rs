//! Kubernetes nodes: CRI log files as kubelet lays them out, with the API
//! played by the fixture server of `k8s_api.rs`, which does on demand what
//! a real server does not: cut a watch mid-stream, compact history at a
//! chosen moment, count every request by kind. What a real kube-apiserver
//! can show (Job pods, a server restart and 410 Expired, RBAC, status
//! writes by many agents) is tested against one in `k8s_real.rs`.

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

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Pod log file appears → its first line received by an HTTP server with
/// full metadata, over `GLEANER_K8S_PODS` pods (20 in the suite), each
/// added at the API a moment before kubelet would create its file; default
/// batch linger (200 ms). Prints p50 / p99.
#[test]
fn pod_log_file_to_first_line_latency() {
    use crate::k8s_api::{ApiServer, pod};
    let api = ApiServer::start();
    let sink = crate::http_sink::Sink::start(&[]);
    let env = Env::new();
    std::fs::create_dir_all(env.path("pods")).unwrap();
    let config = env.config(&format!(
        r#"  - name: pods
    inputs:
      - type: kubernetes
        api_server: "{api}"
        node_name: node-1
        pods_dir: "{pods}"
    flushers:
{http}
"#,
        api = api.url(),
        pods = env.path("pods").display(),
        http = crate::delivery::http_flusher(&sink),
    ));
    let agent = start(&env, &config);
    env.wait_log("Listed this node's pods.", 1);
    let n = knob("GLEANER_K8S_PODS", 20);
    let mut written = Vec::new();
    for i in 0..n {
        let name = format!("p{i}");
        let uid = format!("uid-{i}");
        api.add(pod("lat", &name, &uid, "node-1", &["app"]));
        std::thread::sleep(std::time::Duration::from_millis(30));
        written.push(std::time::SystemTime::now());
        cri_append(
            &env,
            &format!("lat_{name}_{uid}"),
            "app",
            &[&format!("first {i}")],
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    wait_until("every pod's first line", || sink.events().len() >= n);
    let mut lat = vec![0.0; n];
    let mut seen = vec![false; n];
    for r in sink.state.lock().unwrap().requests.iter() {
        for e in json_lines(&r.body) {
            let i: usize = e["message"].as_str().unwrap()["first ".len()..]
                .parse()
                .unwrap();
            assert_eq!(e["k8s.pod.uid"], format!("uid-{i}"));
            assert_eq!(e["k8s.container.image"], "app:1.0");
            if !seen[i] {
                seen[i] = true;
                lat[i] =
                    r.at.duration_since(written[i])
                        .unwrap_or_default()
                        .as_secs_f64()
                        * 1000.0;
            }
        }
    }
    assert!(seen.iter().all(|s| *s));
    assert!(!env.log().contains("pod watch failed"), "{}", env.log());
    lat.sort_by(f64::total_cmp);
    eprintln!(
        "pod log file -> first line delivered over {n} pods: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[n - 1]
    );
    stop(agent);
}

/// `GLEANER_K8S_NODE_PODS` pods on the node (200 in the suite, 1000 for the
/// figures) and pod churn at 100 events/s for `GLEANER_K8S_CHURN_SECS`:
/// the agent keeps one list and one watch (counted at the server) and keeps
/// collecting; its CPU and peak RSS are printed.
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
fn pipeline_resource(
    namespace: Option<&str>,
    name: &str,
    spec: serde_json::Value,
) -> serde_json::Value {
    let kind = if namespace.is_some() {
        "GleanerPipeline"
    } else {
        "ClusterGleanerPipeline"
    };
    let mut metadata = serde_json::json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = serde_json::json!(ns);
    }
    serde_json::json!({"apiVersion": "gleaner.io/v1alpha1", "kind": kind, "metadata": metadata, "spec": spec})
}

fn accepted(
    api: &crate::k8s_api::ApiServer,
    plural: &str,
    key: &str,
) -> (String, String, String, i64) {
    let r = api.cr(plural, key);
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
    use crate::http_sink::Sink;
    use crate::k8s_api::{ApiServer, pod};
    let api = ApiServer::start();
    let sink = Sink::start(&[]);
    let env = Env::new();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let labelled = |ns: &str, name: &str, uid: &str, c: &str, tier: &str| {
        let mut p = pod(ns, name, uid, "node-1", &[c]);
        p.metadata
            .labels
            .get_or_insert_default()
            .insert("tier".into(), tier.into());
        p
    };
    api.add(labelled(
        "shop",
        "web-5f7b9-aaaaa",
        "uid-web",
        "app",
        "front",
    ));
    api.add(labelled("shop", "db-5f7b9-bbbbb", "uid-db", "db", "back"));
    api.add(labelled(
        "blog",
        "web-5f7b9-ccccc",
        "uid-blog",
        "app",
        "front",
    ));
    cri_append(&env, "shop_web-5f7b9-aaaaa_uid-web", "app", &["shop web 1"]);
    cri_append(&env, "shop_db-5f7b9-bbbbb_uid-db", "db", &["shop db 1"]);
    cri_append(
        &env,
        "blog_web-5f7b9-ccccc_uid-blog",
        "app",
        &["blog web 1"],
    );
    env.write("host.log", "host 1\n");
    let config = env.config(&format!(
        r#"  - name: host
    inputs: [{{ type: file, paths: ["{host}"], start_at: beginning }}]
    batch: {{ linger: 20ms }}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/host.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
pipeline_resources:
  api_server: "{api}"
  node_name: node-1
  pods_dir: "{pods}"
"#,
        host = env.path("host.log").display(),
        out = out.display(),
        api = api.url(),
        pods = env.path("pods").display(),
    ));
    let agent = start(&env, &config);
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
    let flusher = serde_json::json!({
        "plugin": "builtin:http",
        "config": {"url": format!("http://{}/", sink.addr)},
        "grants": {"hosts": [sink.addr.to_string()]},
        "on_error": {"backoff": "20ms", "max_backoff": "100ms"}
    });
    let front = |version: Option<&str>| {
        let mut spec = serde_json::json!({
            "selector": {"matchLabels": {"tier": "front"}},
            "input": {"start_at": "beginning"},
            "batch": {"linger": "20ms"},
            "flushers": [flusher.clone()]
        });
        if let Some(v) = version {
            spec["processors"] = serde_json::json!([{"plugin": "builtin:add-fields", "config": {"fields": {"version": v}}}]);
        }
        pipeline_resource(Some("shop"), "front", spec)
    };

    // 1. A resource appears: only its namespace's selected pods are read.
    api.put_cr("gleanerpipelines", front(None));
    wait_until("shop web 1 delivered", || sink_messages().len() == 1);
    assert_eq!(sink_messages(), vec![("shop web 1".into(), "".into())]);
    let e = &sink.events()[0];
    assert_eq!(e["k8s.pod.name"], "web-5f7b9-aaaaa");
    wait_until("Accepted=True", || {
        accepted(&api, "gleanerpipelines", "shop/front").0 == "True"
    });
    assert_eq!(
        accepted(&api, "gleanerpipelines", "shop/front"),
        (
            "True".into(),
            "Running".into(),
            "running as pipeline `shop.front`".into(),
            1
        )
    );

    // 2. An invalid resource gets a condition and changes nothing.
    api.put_cr(
        "gleanerpipelines",
        pipeline_resource(
            Some("shop"),
            "bad",
            serde_json::json!({"flushers": [{"plugin": "/usr/lib/evil.wasm"}]}),
        ),
    );
    wait_until("Accepted=False", || {
        accepted(&api, "gleanerpipelines", "shop/bad").0 == "False"
    });
    assert_eq!(
        accepted(&api, "gleanerpipelines", "shop/bad"),
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
    api.put_cr("gleanerpipelines", front(Some("2")));
    env.wait_log("change=Swapped", 1);
    cri_append(&env, "shop_web-5f7b9-aaaaa_uid-web", "app", &["shop web 2"]);
    env.append("host.log", "host 2\n");
    wait_until("shop web 2 delivered", || sink_messages().len() == 2);
    assert_eq!(
        sink_messages(),
        vec![
            ("shop web 1".into(), "".into()),
            ("shop web 2".into(), "2".into())
        ]
    );
    wait_until("generation 2 accepted", || {
        accepted(&api, "gleanerpipelines", "shop/front").3 == 2
    });

    // 4. Made invalid: the running version stays and keeps delivering.
    let mut broken = front(Some("3"));
    broken["spec"]["selector"] =
        serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "Maybe"}]});
    api.put_cr("gleanerpipelines", broken);
    wait_until("generation 3 rejected", || {
        accepted(&api, "gleanerpipelines", "shop/front").3 == 3
    });
    let (status, reason, message, _) = accepted(&api, "gleanerpipelines", "shop/front");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(
        message.starts_with("spec.selector: matchExpressions[0]: unknown operator `Maybe`"),
        "{message}"
    );
    cri_append(&env, "shop_web-5f7b9-aaaaa_uid-web", "app", &["shop web 3"]);
    wait_until("shop web 3 delivered", || sink_messages().len() == 3);
    assert_eq!(sink_messages()[2], ("shop web 3".into(), "2".into()));

    // 5. A cluster resource reads across namespaces, and may write files.
    api.put_cr(
        "clustergleanerpipelines",
        pipeline_resource(None, "all-front", serde_json::json!({
            "namespaces": ["shop", "blog"],
            "selector": {"matchLabels": {"tier": "front"}},
            "input": {"start_at": "beginning"},
            "batch": {"linger": "20ms"},
            "flushers": [{"plugin": "builtin:file", "config": {"path": format!("{}/cluster.ndjson", out.display())}, "grants": {"dirs": [out.display().to_string()]}}]
        })),
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
    assert_eq!(
        accepted(&api, "clustergleanerpipelines", "all-front").0,
        "True"
    );

    // 6. Deleted: its pipeline stops; the others go on.
    api.delete_cr("gleanerpipelines", "shop/front");
    env.wait_log("Pipeline removed.", 1);
    cri_append(&env, "shop_web-5f7b9-aaaaa_uid-web", "app", &["shop web 4"]);
    env.append("host.log", "host 3\n");
    wait_until("cluster pipeline got line 4", || {
        cluster_messages().len() == 5
    });
    wait_until("host 3", || lines_in(&out.join("host.ndjson")).len() == 3);
    stop(agent);
    let log_text = env.log();
    assert_eq!(sink_messages().len(), 3, "nothing after the delete");
    let host: Vec<String> = lines_in(&out.join("host.ndjson"))
        .iter()
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(host, vec!["host 1", "host 2", "host 3"]);
    // The config file's pipeline was never restarted.
    assert_eq!(starts(&log_text, "host"), 1, "{log_text}");
    let s = api.state.lock().unwrap();
    assert_eq!(s.cr_requests["gleanerpipelines"].0, 1, "one list");
    assert_eq!(s.cr_requests["gleanerpipelines"].1, 1, "one watch");
    assert_eq!(s.cr_requests["clustergleanerpipelines"].0, 1);
}

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

#[test]
fn files_inside_pods_are_read_from_their_volumes_and_the_api_answers_probes() {
    use crate::k8s_api::{ApiServer, pod};
    let api = ApiServer::start();
    let env = Env::new();
    let mut p = pod("shop", "api-5f7b9-ddddd", "uid-api", "node-1", &["api"]);
    let spec = p.spec.as_mut().unwrap();
    spec.volumes = Some(vec![
        serde_json::from_value(serde_json::json!({"name": "logs", "emptyDir": {}})).unwrap(),
    ]);
    spec.containers[0].volume_mounts = Some(vec![
        serde_json::from_value(serde_json::json!({"name": "logs", "mountPath": "/var/log/api"}))
            .unwrap(),
    ]);
    api.add(p);
    let volume = "kubelet/pods/uid-api/volumes/kubernetes.io~empty-dir/logs";
    env.write(&format!("{volume}/access.log"), "GET /a\nGET /b\n");
    env.write(&format!("{volume}/debug.txt"), "never: not matched\n");
    cri_append(
        &env,
        "shop_api-5f7b9-ddddd_uid-api",
        "api",
        &["never: stdout is off"],
    );
    let port = free_port();
    let config = pods_config(
        &env,
        &api,
        &format!(
            "        stdout: false\n        paths: [/var/log/api/*.log]\n        kubelet_dir: \"{}\"",
            env.path("kubelet").display()
        ),
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}api:\n  address: 127.0.0.1:{port}\n"),
    )
    .unwrap();
    let agent = start(&env, &config);
    let got = wait_messages(&env, 2);
    assert_eq!(got.keys().collect::<Vec<_>>(), vec!["GET /a", "GET /b"]);
    let e = &got["GET /a"];
    assert_eq!(e["k8s.pod.name"], "api-5f7b9-ddddd");
    assert_eq!(e["k8s.container.name"], "api");
    assert!(e.get("stream").is_none(), "a file line has no stream: {e}");
    env.append(&format!("{volume}/access.log"), "GET /c\n");
    wait_messages(&env, 3);

    assert_eq!(api_get(port, "/healthz"), (200, "ok\n".into()));
    assert_eq!(api_get(port, "/readyz"), (200, "ready\n".into()));
    let (status, body) = api_get(port, "/api/v1/pipelines");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
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
    stop(agent);
    assert_eq!(by_message(&env).len(), 3);
}

#[test]
fn namespace_labels_become_tags_and_follow_changes() {
    use crate::k8s_api::{ApiServer, pod};
    let api = ApiServer::start();
    let env = Env::new();
    let namespace = |team: &str| {
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"team": team}}})
    };
    api.put_cr("namespaces", namespace("a"));
    api.add(pod(
        "shop",
        "web-5f7b9-aaaaa",
        "uid-web",
        "node-1",
        &["app"],
    ));
    cri_append(&env, "shop_web-5f7b9-aaaaa_uid-web", "app", &["line 0"]);
    let config = pods_config(&env, &api, "        namespace_label_tags: true");
    let agent = start(&env, &config);
    let got = wait_messages(&env, 1);
    assert_eq!(got["line 0"]["k8s.namespace.label.team"], "a");
    api.put_cr("namespaces", namespace("b"));
    // The new tags apply from the next batch on: write until one has them.
    let mut n = 1;
    wait_until("a line tagged team=b", || {
        cri_append(
            &env,
            "shop_web-5f7b9-aaaaa_uid-web",
            "app",
            &[&format!("line {n}")],
        );
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
        by_message(&env)
            .values()
            .any(|e| e["k8s.namespace.label.team"] == "b")
    });
    stop(agent);
    let teams: Vec<String> = lines_in(&env.path("out/events.ndjson"))
        .iter()
        .map(|e| e["k8s.namespace.label.team"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(teams.len(), n, "every line once");
    let first_b = teams.iter().position(|t| t == "b").unwrap();
    assert!(
        teams[..first_b].iter().all(|t| t == "a") && teams[first_b..].iter().all(|t| t == "b"),
        "{teams:?}"
    );
    let s = api.state.lock().unwrap();
    assert_eq!(
        s.cr_requests["namespaces"],
        (1, 1, 0),
        "one list and one watch of namespaces"
    );
    assert_eq!((s.lists, s.watches), (1, 1), "and of pods");
}
