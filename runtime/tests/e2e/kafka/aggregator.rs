//! Two tiers: an agent ships a file to Kafka; an aggregator's `kafka`
//! input reads it back into a file. SIGTERM of the aggregator mid-run
//! loses and repeats nothing: its offsets are committed once delivered.

use std::collections::HashMap;

use super::*;

#[test]
fn an_aggregator_stopped_mid_run_loses_and_repeats_nothing() {
    let n = knob("GLEANER_KAFKA_AGG_LINES", 30_000);
    let env = Env::new();
    let broker = Broker::start(Storage::Memory, env.dir.path());
    client(&["create", &broker.addr(), "logs", "3"]);

    // Tier 1: the agent, file → Kafka (JSON documents, keyed by app),
    // fed by a writer while the first aggregator runs.
    let agent_dir = Env::new();
    let logs = agent_dir.path("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let agent = agent_dir.config(&format!(
        r#"
  - name: ship
    inputs: [{{ type: file, paths: ["{logs}/*.log"], start_at: beginning }}]
    batch: {{ linger: 20ms }}
    processors: [{{ plugin: builtin:parse-json }}]
    flushers:
      - plugin: builtin:kafka
        grants: {{ hosts: ["{a}"] }}
        config: {{ brokers: ["{a}"], topic: logs, key: app }}
"#,
        logs = logs.display(),
        a = broker.addr()
    ));
    let mut shipper = Reaper(Some(start(&agent_dir, &agent)));
    let file = logs.join("app.log");
    let chunks = 30;
    // The last third is written only once the first aggregator has
    // stopped, so it stops mid-run however fast or slow the machine is.
    let (stopped_tx, stopped) = std::sync::mpsc::channel::<()>();
    let writer = std::thread::spawn(move || {
        for c in 0..chunks {
            if c == 2 * chunks / 3 {
                let _ = stopped.recv();
            }
            let lines: String = (c * n / chunks..(c + 1) * n / chunks)
                .map(|i| format!("{{\"seq\":{i},\"app\":\"a{}\"}}\n", i % 5))
                .collect();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .unwrap();
            std::io::Write::write_all(&mut f, lines.as_bytes()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });

    // Tier 2: the aggregator, Kafka → file, stopped once mid-run.
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    let events = out.join("events.ndjson");
    let aggregator = env.config(&format!(
        r#"
  - name: aggregate
    inputs: [{{ type: kafka, brokers: ["{a}"], topics: [logs], group: aggregators, commit_interval: 100ms }}]
    batch: {{ max_events: 500 }}
    processors: [{{ plugin: builtin:parse-json }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        a = broker.addr(),
        out = out.display()
    ));
    let mut first = Reaper(Some(start(&env, &aggregator)));
    wait_until("some events aggregated", || {
        lines_in(&events).len() >= n / 5
    });
    let (status, _) = first.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());
    stopped_tx.send(()).unwrap();
    let after_first = lines_in(&events).len();
    assert!(
        after_first < n,
        "the first run was to stop mid-way ({after_first} of {n})"
    );
    // What the group committed is exactly what was written, per partition.
    let committed = client(&["committed", &broker.addr(), "aggregators", "logs"]);
    let mut written: HashMap<String, u64> = HashMap::new();
    for e in lines_in(&events) {
        *written
            .entry(e["kafka.partition"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    for (p, count) in &written {
        assert_eq!(
            committed[p].as_u64(),
            Some(*count),
            "partition {p}: {committed}"
        );
    }

    writer.join().unwrap();
    let mut second = Reaper(Some(start(&env, &aggregator)));
    wait_until("every event aggregated", || lines_in(&events).len() >= n);
    let (status, _) = shipper.sigterm_and_wait();
    assert!(status.success(), "{}", agent_dir.log());
    let (status, _) = second.sigterm_and_wait();
    assert!(status.success(), "{}", env.log());

    let got = lines_in(&events);
    assert_eq!(got.len(), n, "nothing repeated");
    let mut seen = vec![0u32; n];
    for e in &got {
        seen[e["seq"].as_u64().unwrap() as usize] += 1;
    }
    assert!(seen.iter().all(|&c| c == 1), "every line exactly once");
    let e = &got[0];
    assert_eq!(e["kafka.topic"], "logs");
    assert!(e["kafka.offset"].is_u64(), "the offset is an int: {e}");
    assert_eq!(
        e["kafka.key"].as_str().map(|k| k.starts_with('a')),
        Some(true),
        "{e}"
    );
    assert!(
        e["source.path"].as_str().unwrap().ends_with("app.log"),
        "the agent's tags travel in the document: {e}"
    );
    let log = env.log();
    assert!(log.contains("Joined the Kafka consumer group."), "{log}");
}
