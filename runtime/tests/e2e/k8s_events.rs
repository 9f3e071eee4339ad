//! The `kubernetes_events` input against a real kube-apiserver (the kit,
//! see `k8s_kit.rs`): two agents share one Lease; Events made while the
//! leader stops, while a restarted agent waits its turn and while no agent
//! runs at all are each shipped once, with their involved object.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Child;

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::common::*;
use crate::k8s_kit::Kit;
use crate::k8s_real::run_as;

/// The Events' own times start here, one second apart.
const BASE: i64 = 1_796_025_600; // 2026-11-30T08:00:00Z

/// An agent named `identity` shipping the Events of namespaces `shop` and
/// `blog` into `out/events.ndjson` of `env` (the API server reports Events
/// of its own in `default`).
fn agent(env: &Env, kit: &Kit, identity: &str) -> Child {
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let config = env.config(&format!(
        r#"
  - name: events
    inputs:
      - {{ type: kubernetes_events, identity: {identity}, lease_namespace: gleaner, namespaces: [shop, blog] }}
    batch: {{ max_events: 64, linger: 50ms }}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        out = out.display(),
    ));
    run_as(env, &config, &kit.kubeconfig())
}

/// Field `jsonpath` of the input's Lease (empty before it is made).
fn lease(kit: &Kit, jsonpath: &str) -> String {
    let path = format!("jsonpath={jsonpath}");
    let args = [
        "-n",
        "gleaner",
        "get",
        "lease",
        "gleaner-events-events",
        "-o",
        &path,
    ];
    kit.try_kubectl(&args).unwrap_or_default()
}

/// Who holds the input's Lease (empty when given up or not made yet).
fn holder(kit: &Kit) -> String {
    lease(kit, "{.spec.holderIdentity}")
}

/// What the test made: per Event uid, its object's uid, name and number.
#[derive(Default)]
struct Made {
    events: HashMap<String, (String, String, i64)>,
}

impl Made {
    /// Objects `from..to`: each a ConfigMap created and deleted, with a
    /// `Created` and a `Deleted` Event about it, as a controller reports
    /// them (no controller runs in the kit): two Events per object.
    fn churn(&mut self, kit: &Kit, from: usize, to: usize) {
        for i in from..to {
            let name = format!("cm-{i}");
            let cm: ConfigMap = kit.create("shop", json!({"metadata": {"name": name}}));
            let uid = cm.metadata.uid.clone().unwrap();
            for (n, reason) in [(2 * i, "Created"), (2 * i + 1, "Deleted")] {
                if reason == "Deleted" {
                    kit.delete::<ConfigMap>("shop", &name);
                }
                let at = Timestamp::from_second(BASE + n as i64).unwrap().to_string();
                let e: Event = kit.create(
                    "shop",
                    json!({
                        "metadata": {"name": format!("{name}.{}", reason.to_lowercase())},
                        "involvedObject": {"kind": "ConfigMap", "namespace": "shop", "name": name,
                                           "uid": uid, "apiVersion": "v1",
                                           "resourceVersion": cm.metadata.resource_version},
                        "reason": reason, "message": format!("{reason} configmap {name}"),
                        "type": if n % 10 == 0 { "Warning" } else { "Normal" },
                        "firstTimestamp": at, "lastTimestamp": at, "count": 1,
                        "source": {"component": "gleaner-test"}
                    }),
                );
                self.events.insert(
                    e.metadata.uid.unwrap(),
                    (uid.clone(), name.clone(), n as i64),
                );
            }
        }
    }

    /// SIGTERM to `agent`, objects `objects` churned while it stops; it
    /// must exit cleanly.
    fn stop_while_churning(
        &mut self,
        kit: &Kit,
        agent: &mut Reaper,
        env: &Env,
        objects: std::ops::Range<usize>,
    ) {
        signal(agent.child(), libc::SIGTERM);
        self.churn(kit, objects.start, objects.end);
        let (status, _) = wait_exit(&mut agent.take());
        assert!(status.success(), "{}", env.log());
    }
}

fn delivered(outs: &[&Env]) -> Vec<Value> {
    outs.iter()
        .flat_map(|e| lines_in(&e.path("out/events.ndjson")))
        .collect()
}

/// 1,000 Events made by creating and deleting objects, shipped across a
/// leader change (the leader stopped while Events keep coming), an agent
/// restarted as the standby that then takes over, and a time with no
/// agent at all: each Event once, with its involved object, its own time
/// and its type; 50 of them updated afterwards are shipped once more,
/// as their new version.
#[test]
fn events_are_shipped_once_across_a_leader_change_and_a_restart() {
    let kit = Kit::start();
    kit.namespace("gleaner");
    kit.namespace("shop");
    let (a_env, b_env) = (Env::new(), Env::new());
    let mut made = Made::default();
    // Before any agent: shipped since the input starts at `existing`.
    made.churn(&kit, 0, 50);
    let mut a = Reaper(Some(agent(&a_env, &kit, "node-a")));
    wait_until("node-a holds the Lease", || holder(&kit) == "node-a");
    let mut b = Reaper(Some(agent(&b_env, &kit, "node-b")));
    made.churn(&kit, 50, 150);
    // The leader stops while Events keep coming; node-b takes over.
    made.stop_while_churning(&kit, &mut a, &a_env, 150..250);
    wait_until("node-b holds the Lease", || holder(&kit) == "node-b");
    // node-a comes back and waits; then node-b stops and node-a leads.
    let mut a = Reaper(Some(agent(&a_env, &kit, "node-a")));
    made.churn(&kit, 250, 350);
    made.stop_while_churning(&kit, &mut b, &b_env, 350..440);
    wait_until("node-a holds the Lease again", || holder(&kit) == "node-a");
    made.churn(&kit, 440, 490);
    // 50 Events happen again: their count and last time change.
    let events: Vec<String> = (440..465)
        .flat_map(|i| [format!("cm-{i}.created"), format!("cm-{i}.deleted")])
        .collect();
    for name in &events {
        let mut e: Event = kit.get("shop", name);
        e.count = Some(2);
        let n = made.events[e.metadata.uid.as_ref().unwrap()].2;
        e.last_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(BASE + 5000 + n).unwrap(),
        ));
        kit.replace("shop", &e);
    }
    wait_until("1030 Event versions shipped", || {
        delivered(&[&a_env, &b_env]).len() >= 1030
    });
    let (status, _) = a.sigterm_and_wait();
    assert!(status.success(), "{}", a_env.log());
    // No agent runs: these wait for the next one.
    made.churn(&kit, 490, 500);
    let mut a = Reaper(Some(agent(&a_env, &kit, "node-a")));
    wait_until("1050 Event versions shipped", || {
        delivered(&[&a_env, &b_env]).len() >= 1050
    });
    let (status, _) = a.sigterm_and_wait();
    assert!(status.success(), "{}", a_env.log());

    assert_eq!(made.events.len(), 1000);
    let all = delivered(&[&a_env, &b_env]);
    let mut versions = HashSet::new();
    let mut per_uid: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in &all {
        let rv = e["k8s.event.resource_version"].as_i64().unwrap();
        let uid = e["k8s.event.uid"].as_str().unwrap().to_owned();
        assert!(
            versions.insert((uid.clone(), rv)),
            "shipped twice: {e}\n--- node-a\n{}\n--- node-b\n{}",
            a_env.log(),
            b_env.log()
        );
        per_uid.entry(uid).or_default().push(e);
    }
    for (uid, shipped) in &per_uid {
        assert!(
            made.events.contains_key(uid),
            "not made by the test: {shipped:?}"
        );
    }
    for (uid, shipped) in &per_uid {
        let (object_uid, name, n) = &made.events[uid];
        let first = shipped[0];
        let reason = first["k8s.event.reason"].as_str().unwrap();
        assert_eq!(first["message"], format!("{reason} configmap {name}"));
        assert_eq!(first["k8s.object.kind"], "ConfigMap");
        assert_eq!(first["k8s.object.name"], name.as_str());
        assert_eq!(first["k8s.object.uid"], object_uid.as_str());
        assert_eq!(first["k8s.namespace.name"], "shop");
        assert_eq!(first["k8s.event.reporting_component"], "gleaner-test");
        assert_eq!(first["k8s.event.count"], 1);
        let at: Timestamp = first["timestamp"].as_str().unwrap().parse().unwrap();
        assert_eq!(at.as_second(), BASE + n, "{first}");
        let severity = if n % 10 == 0 { "WARN" } else { "INFO" };
        assert_eq!(first["severity"], severity, "{first}");
        let updated = (880..930).contains(n);
        assert_eq!(shipped.len(), if updated { 2 } else { 1 }, "{uid}");
        if updated {
            let again = shipped[1];
            assert_eq!(again["k8s.event.count"], 2);
            let at: Timestamp = again["timestamp"].as_str().unwrap().parse().unwrap();
            assert_eq!(at.as_second(), BASE + 5000 + n);
        }
    }
    assert_eq!(per_uid.len(), 1000, "every Event");
    assert_eq!(all.len(), 1050, "1000 Events and 50 updates, no more");
    // Both agents shipped a share; node-b resumed where node-a stopped,
    // and node-a's last run where its run before stopped.
    let (by_a, by_b) = (
        lines_in(&a_env.path("out/events.ndjson")).len(),
        lines_in(&b_env.path("out/events.ndjson")).len(),
    );
    assert!(by_a > 0 && by_b > 0, "a {by_a}, b {by_b}");
    for env in [&a_env, &b_env] {
        let log = env.log();
        assert_eq!(log.matches("Resuming the Events").count(), 1, "{log}");
    }
    // The Lease keeps the last resourceVersion shipped.
    let last = all
        .iter()
        .map(|e| e["k8s.event.resource_version"].as_i64().unwrap())
        .max()
        .unwrap();
    let kept = lease(
        &kit,
        "{.metadata.annotations.gleaner\\.io/events-delivered-through}",
    );
    assert_eq!(kept, last.to_string());
}
