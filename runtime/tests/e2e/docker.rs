//! Docker: the real binary against the machine's real Docker engine, with
//! containers made from the `gleaner-test/busybox` image
//! (`scripts/test-image.sh`, built from Debian's busybox-static, no
//! registry). Each test labels its containers with its own run id and
//! selects only those, so tests can run side by side.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

pub const IMAGE: &str = "gleaner-test/busybox:1";
const LABEL: &str = "gleaner.test";

/// Runs `docker ARGS`, asserting success; returns stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Builds the test image once per test run.
pub fn test_image() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let st = Command::new("bash")
            .arg(workspace().join("scripts/test-image.sh"))
            .status()
            .unwrap();
        assert!(st.success(), "scripts/test-image.sh failed");
    });
}

/// Containers of one test: labelled with a unique run id, removed on drop.
pub struct Containers {
    pub run: String,
}

impl Containers {
    pub fn new() -> Self {
        test_image();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Containers {
            run: format!("r{}-{}", std::process::id(), nanos % 1_000_000_000),
        }
    }

    /// `docker run -d` with this run's label; returns the container id.
    pub fn run(&self, name: &str, extra: &[&str], script: &str) -> String {
        self.docker(&["run", "-d"], name, extra, script)
    }

    /// `docker VERB…` (`run`, `create`) of a container named `name` in
    /// this run, with its label, running `script`; returns stdout.
    pub fn docker(&self, verb: &[&str], name: &str, extra: &[&str], script: &str) -> String {
        let label = format!("{LABEL}={}", self.run);
        let name = self.name(name);
        let mut args = verb.to_vec();
        args.extend_from_slice(&["--name", &name, "--label", &label]);
        args.extend_from_slice(extra);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        docker(&args)
    }

    pub fn name(&self, name: &str) -> String {
        format!("{}-{name}", self.run)
    }

    /// The `include` filter that selects this run's containers.
    pub fn include(&self) -> String {
        format!("include: {{ labels: {{ {LABEL}: \"{}\" }} }}", self.run)
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter"])
            .arg(format!("label={LABEL}={}", self.run))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
    }
}

/// A pipeline reading this run's containers into `out/events.ndjson`.
fn docker_pipeline(env: &Env, c: &Containers, extra: &str) -> PathBuf {
    docker_pipeline_with(env, c, "", extra)
}

/// [`docker_pipeline`] with top-level config lines `top`.
fn docker_pipeline_with(env: &Env, c: &Containers, top: &str, extra: &str) -> PathBuf {
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    env.config_with(
        top,
        &format!(
        r#"  - name: containers
    inputs:
      - type: docker
        start_at: beginning
        partial_line_timeout: 1s
        {include}
{extra}
    batch: {{ linger: 50ms }}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson", max_bytes: 17179869184 }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        include = c.include(),
        out = out.display(),
        ),
    )
}

/// A fresh test dir and run id, and the agent started on a pipeline that
/// reads this run's containers (see [`docker_pipeline`]), connected.
fn start_agent(extra: &str) -> (Env, Containers, std::process::Child) {
    let env = Env::new();
    let c = Containers::new();
    let config = docker_pipeline(&env, &c, extra);
    let agent = start(&env, &config);
    env.wait_log("Connected to the Docker engine", 1);
    (env, c, agent)
}

fn events(env: &Env) -> Vec<Value> {
    lines_in(&env.path("out/events.ndjson"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// Waits until `n` events are written (or fails after the shared timeout),
/// counting lines cheaply so the wait does not steal the agent's CPU.
fn wait_events(env: &Env, n: usize) -> Vec<Value> {
    let out = env.path("out/events.ndjson");
    wait_until(&format!("{n} events"), || {
        std::fs::read(&out)
            .map(|b| memchr_count(&b) >= n)
            .unwrap_or(false)
    });
    events(env)
}

#[test]
fn container_output_is_collected_with_stream_engine_time_metadata_and_joined_long_lines() {
    let (env, c, agent) =
        start_agent("        env_tags: [APP_VERSION]\n        exclude: { name: \".*-skipped\" }");
    // 40,000 bytes on one line: the engine splits it into 16 KiB pieces.
    let long = "x".repeat(40_000);
    let id = c.run(
        "app",
        &["-e", "APP_VERSION=1.2.3", "-e", "OTHER=no", "--label", "team=core"],
        &format!("echo out-1; echo err-1 >&2; echo {long}; printf '%s\\n' 'quote \" and \\ tab\t'; printf last-no-newline"),
    );
    c.run("skipped", &[], "echo never");
    c.run("nodriver", &["--log-driver", "none"], "echo unread");
    let got = wait_events(&env, 5);
    std::thread::sleep(Duration::from_millis(500));
    let got_again = events(&env);
    assert_eq!(got_again.len(), 5, "exactly five events: {got_again:#?}");
    let by_msg: BTreeMap<&str, &Value> = got.iter().map(|e| (s(e, "message"), e)).collect();
    assert_eq!(
        by_msg.keys().map(|m| m.len()).collect::<Vec<_>>().len(),
        5,
        "five distinct messages"
    );
    assert_eq!(s(by_msg["out-1"], "stream"), "stdout");
    assert_eq!(s(by_msg["err-1"], "stream"), "stderr");
    assert_eq!(s(by_msg[long.as_str()], "stream"), "stdout");
    assert!(by_msg.contains_key("quote \" and \\ tab\t"));
    assert_eq!(s(by_msg["last-no-newline"], "stream"), "stdout");
    for e in &got {
        assert_eq!(s(e, "container.id"), id);
        assert_eq!(s(e, "container.name"), c.name("app"));
        assert_eq!(s(e, "container.image"), IMAGE);
        assert_eq!(s(e, "container.label.team"), "core");
        assert_eq!(s(e, "container.label.gleaner.test"), c.run);
        assert_eq!(s(e, "container.env.APP_VERSION"), "1.2.3");
        assert!(e.get("container.env.OTHER").is_none());
    }
    // Timestamps are the engine's, as written in the json-file log.
    let log_path = docker(&["inspect", "-f", "{{.LogPath}}", &id]);
    let raw = std::fs::read_to_string(&log_path).unwrap();
    let first: Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    let first_msg = s(&first, "log").trim_end();
    // The same instant: the engine trims trailing zeros of the fraction
    // (RFC 3339 "nano"), Gleaner writes all nine digits.
    let instant = |t: &str| humantime::parse_rfc3339(t).unwrap();
    assert_eq!(
        instant(s(by_msg[first_msg], "timestamp")),
        instant(s(&first, "time")),
        "engine time kept"
    );
    stop(agent);
    let agent_log = env.log();
    assert_eq!(
        agent_log
            .matches("driver Gleaner cannot read (only json-file)")
            .count(),
        1,
        "a container without json-file is reported once: {agent_log}"
    );
    assert!(agent_log.contains("unsupported_drivers=1"), "{agent_log}");
}

/// How many short-lived containers: 20 in the suite, 100 for the figures
/// (`GLEANER_DOCKER_CONTAINERS=100`).
fn short_lived() -> usize {
    knob("GLEANER_DOCKER_CONTAINERS", 20)
}

#[test]
fn short_lived_containers_are_collected_completely() {
    let (env, c, agent) = start_agent("");
    let n = short_lived();
    let lines = 1000;
    let script =
        format!("i=0; while [ $i -lt {lines} ]; do echo \"$HOSTNAME line $i\"; i=$((i+1)); done");
    let started = Instant::now();
    // Four at a time, like a busy CI node.
    let handles: Vec<_> = (0..4)
        .map(|k| {
            let (run, script) = (c.run.clone(), script.clone());
            std::thread::spawn(move || {
                for i in (k..n).step_by(4) {
                    let name = format!("{run}-short{i}");
                    docker(&[
                        "run",
                        "-d",
                        "--name",
                        &name,
                        "--hostname",
                        &format!("h{i}"),
                        "--label",
                        &format!("{LABEL}={run}"),
                        "--label",
                        &format!("index={i}"),
                        IMAGE,
                        "sh",
                        "-c",
                        &script,
                    ]);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let got = wait_events(&env, n * lines);
    eprintln!(
        "{n} short-lived containers x {lines} lines collected in {:?}",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_millis(300));
    let got_again = events(&env);
    assert_eq!(got_again.len(), n * lines, "no duplicates");
    let mut per: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for e in &got {
        let msg = s(e, "message");
        let (host, rest) = msg.split_once(" line ").unwrap();
        let i: usize = host[1..].parse().unwrap();
        assert_eq!(s(e, "container.name"), c.name(&format!("short{i}")));
        assert_eq!(s(e, "container.label.index"), i.to_string());
        assert_eq!(s(e, "stream"), "stdout");
        per.entry(host.to_owned())
            .or_default()
            .push(rest.parse().unwrap());
    }
    assert_eq!(per.len(), n);
    for (host, seqs) in per {
        assert_eq!(
            seqs,
            (0..lines as u32).collect::<Vec<_>>(),
            "{host} in order"
        );
    }
    stop(agent);
}

#[test]
fn files_inside_containers_are_read_through_mounts_and_the_writable_layer_across_restarts() {
    let (env, c, mut agent) = start_agent(
        "        stdout: false\n        paths: [/var/log/app/*.log, /data/*.log, /srv/vol/*.log]",
    );
    let config = env.path("gleaner.yaml");
    let mounted = env.path("mounted");
    std::fs::create_dir_all(&mounted).unwrap();
    let mount = format!("{}:/var/log/app", mounted.display());
    // A bind mount, an (anonymous) volume and the writable layer. Writes
    // 100 lines to each file, then waits for /tmp/go to write 100 more.
    let write = "echo \"m $i\" >> /var/log/app/a.log; echo \"u $i\" >> /data/b.log; echo \"v $i\" >> /srv/vol/c.log";
    let id = c.run(
        "files",
        &["-v", &mount, "-v", "/srv/vol"],
        &format!(
            "mkdir -p /data; i=0; while [ $i -lt 100 ]; do {write}; i=$((i+1)); done; \
             while [ ! -f /tmp/go ]; do sleep 0.05; done; \
             while [ $i -lt 200 ]; do {write}; i=$((i+1)); done"
        ),
    );
    wait_events(&env, 300);
    // Restart Gleaner while the container is quiet; the container writes
    // its second half and exits while Gleaner is down.
    signal(&agent, libc::SIGTERM);
    agent.wait().unwrap();
    docker(&["exec", &id, "touch", "/tmp/go"]);
    docker(&["wait", &id]);
    agent = start(&env, &config);
    let got = wait_events(&env, 600);
    env.wait_log(
        "Read the file of a removed target to its end; closed it.",
        3,
    );
    std::thread::sleep(Duration::from_millis(300));
    let got_again = events(&env);
    assert_eq!(got_again.len(), 600, "no duplicates");
    let mut m = Vec::new();
    let mut u = Vec::new();
    let mut v = Vec::new();
    for e in &got {
        let (kind, n) = s(e, "message").split_once(' ').unwrap();
        let n: u32 = n.parse().unwrap();
        assert_eq!(s(e, "container.name"), c.name("files"));
        let path = s(e, "source.path");
        match kind {
            "m" => {
                assert_eq!(path, mounted.join("a.log").to_str().unwrap());
                m.push(n)
            }
            "u" => {
                assert!(path.ends_with("/diff/data/b.log"), "{path}");
                u.push(n)
            }
            "v" => {
                assert!(
                    path.starts_with("/var/lib/docker/volumes/") && path.ends_with("/_data/c.log"),
                    "{path}"
                );
                v.push(n)
            }
            _ => panic!("{kind}"),
        }
    }
    assert_eq!(m, (0..200).collect::<Vec<_>>());
    assert_eq!(u, (0..200).collect::<Vec<_>>());
    assert_eq!(v, (0..200).collect::<Vec<_>>());
    stop(agent);
    // Drained targets are forgotten.
    let cp = std::fs::read_to_string(env.path("state/checkpoints.json")).unwrap();
    let cp: Value = serde_json::from_str(&cp).unwrap();
    assert_eq!(cp["targets"].as_array().unwrap().len(), 0, "{cp:#}");
}

#[test]
fn an_unreachable_engine_is_reported_retried_and_leaves_other_pipelines_alone() {
    let env = Env::new();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    env.write("logs/app.log", "");
    let config = env.config(&format!(
        r#"  - name: containers
    inputs: [{{ type: docker, endpoint: "unix://{sock}" }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/docker.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
  - name: files
    inputs: [{{ type: file, paths: ["{logs}/*.log"] }}]
    batch: {{ linger: 50ms }}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        sock = env.path("no-such-docker.sock").display(),
        logs = env.path("logs").display(),
        out = out.display(),
    ));
    let agent = start(&env, &config);
    env.wait_log("Started tailing file", 1);
    env.append("logs/app.log", "one\ntwo\n");
    wait_events(&env, 2);
    env.wait_log("Docker discovery failed", 3);
    let log = env.log();
    assert!(
        log.contains(&format!(
            "Docker engine at unix://{}",
            env.path("no-such-docker.sock").display()
        )),
        "{log}"
    );
    stop(agent);
    assert!(env.log().contains("engine_errors="));
}

#[test]
fn malformed_json_file_lines_are_kept_raw_and_counted() {
    let env = Env::new();
    let out = env.path("out");
    std::fs::create_dir_all(&out).unwrap();
    env.write(
        "containers/abc-json.log",
        "{\"log\":\"ok\\n\",\"stream\":\"stderr\",\"time\":\"2024-01-02T03:04:05.000000006Z\"}\nnot json at all\n{\"log\":\"part-\",\"stream\":\"stdout\",\"time\":\"2024-01-02T03:04:06Z\"}\n{\"log\":\"two\\n\",\"stream\":\"stdout\",\"time\":\"2024-01-02T03:04:07Z\"}\n",
    );
    let config = env.config(&format!(
        r#"  - name: json
    inputs: [{{ type: file, paths: ["{dir}/*-json.log"], format: docker-json, start_at: beginning }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{out}/events.ndjson" }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
        dir = env.path("containers").display(),
        out = out.display(),
    ));
    let out = run_once(&config);
    let got = events(&env);
    let summary: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|e| (s(e, "message"), s(e, "stream"), s(e, "timestamp")))
        .collect();
    assert_eq!(
        summary[0],
        ("ok", "stderr", "2024-01-02T03:04:05.000000006Z")
    );
    assert_eq!(summary[1].0, "not json at all");
    assert_eq!(summary[1].1, "");
    assert_eq!(
        summary[2],
        ("part-two", "stdout", "2024-01-02T03:04:06.000000000Z")
    );
    assert_eq!(got.len(), 3);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("lines_malformed=1"), "{log}");
}

/// The image `deploy/docker/build.sh` builds with the binary under test.
fn gleaner_image() -> String {
    static ONCE: Once = Once::new();
    let tag = "gleaner-test/gleaner:dev".to_owned();
    ONCE.call_once(|| {
        let st = Command::new("bash")
            .arg(workspace().join("deploy/docker/build.sh"))
            .arg(env!("CARGO_BIN_EXE_gleaner"))
            .arg("gleaner-test/gleaner:dev")
            .status()
            .unwrap();
        assert!(st.success(), "deploy/docker/build.sh failed");
    });
    tag
}

fn seqs(path: &Path) -> BTreeMap<u64, u32> {
    let mut m = BTreeMap::new();
    for e in lines_in(path) {
        if let Some(n) = s(&e, "message").strip_prefix("seq=") {
            let n = n.split(' ').next().unwrap();
            *m.entry(n.parse().unwrap()).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn gleaner_in_a_container_collects_another_container_across_its_own_restart() {
    let env = Env::new();
    let c = Containers::new();
    let image = gleaner_image();
    let out = env.path("out");
    let data = env.path("data");
    let etc = env.path("etc");
    for d in [&out, &data, &etc] {
        std::fs::create_dir_all(d).unwrap();
    }
    // The image runs as uid 10001: what it writes must be its own.
    for d in [&out, &data] {
        std::os::unix::fs::chown(d, Some(10001), Some(10001)).unwrap();
    }
    // Small, and not root.
    let inspect = |format: &str| {
        let o = Command::new("docker")
            .args(["image", "inspect", &image, "--format", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    let size: u64 = inspect("{{.Size}}").parse().unwrap();
    assert!(size <= 60_000_000, "the image is {size} bytes");
    assert_eq!(inspect("{{.Config.User}}"), "10001:10001");
    std::fs::write(
        etc.join("gleaner.yaml"),
        format!(
            r#"data_dir: /var/lib/gleaner
shutdown_timeout: 5s
pipelines:
  - name: containers
    inputs:
      - type: docker
        start_at: beginning
        {include}
    batch: {{ linger: 50ms }}
    flushers: [{{ plugin: builtin:file, config: {{ path: /out/events.ndjson }}, grants: {{ dirs: [/out] }} }}]
"#,
            include = c.include()
        ),
    )
    .unwrap();
    let gleaner_name = c.name("gleaner");
    // The agent itself does not carry the run label: it must not read itself.
    let mounts = [
        "/var/run/docker.sock:/var/run/docker.sock".to_owned(),
        "/var/lib/docker/containers:/var/lib/docker/containers:ro".to_owned(),
        format!("{}:/var/lib/gleaner", data.display()),
        format!("{}:/etc/gleaner:ro", etc.display()),
        format!("{}:/out", out.display()),
    ];
    let socket_group = std::fs::metadata("/var/run/docker.sock")
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m).to_string())
        .unwrap();
    let mut args = vec![
        "run",
        "-d",
        "--name",
        &gleaner_name,
        "--label",
        "gleaner.test.agent=1",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "DAC_READ_SEARCH",
        "--group-add",
        &socket_group,
    ];
    for m in &mounts {
        args.extend_from_slice(&["-v", m]);
    }
    args.push(&image);
    docker(&args);
    let cleanup = GleanerContainer(gleaner_name.clone());
    let agent_log = || {
        Command::new("docker")
            .args(["logs", &gleaner_name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default()
    };
    wait_until("the agent in a container connects", || {
        agent_log().contains("Connected to the Docker engine")
    });
    // Its process: uid 10001, and of all capabilities only the one that
    // reads root's log files (CAP_DAC_READ_SEARCH, bit 2).
    let pid = Command::new("docker")
        .args(["inspect", "--format", "{{.State.Pid}}", &gleaner_name])
        .output()
        .unwrap();
    let status = std::fs::read_to_string(format!(
        "/proc/{}/status",
        String::from_utf8_lossy(&pid.stdout).trim()
    ))
    .unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(field("Uid:"), "10001", "{status}");
    assert_eq!(field("CapEff:"), "0000000000000004", "{status}");
    let total = 3000;
    c.run(
        "logger",
        &[],
        &format!("i=0; while [ $i -lt {total} ]; do echo seq=$i; i=$((i+1)); if [ $((i % 100)) = 0 ]; then sleep 0.1; fi; done"),
    );
    let events = out.join("events.ndjson");
    wait_until("some lines collected", || seqs(&events).len() >= 300);
    // Restart the agent in the middle of the stream (SIGTERM, then start).
    docker(&["restart", "-t", "10", &gleaner_name]);
    wait_until("all lines collected", || seqs(&events).len() >= total);
    let log = agent_log();
    assert_eq!(
        log.matches("Connected to the Docker engine").count(),
        2,
        "{log}"
    );
    assert!(log.contains("resumed=true"), "{log}");
    std::thread::sleep(Duration::from_millis(500));
    let got = seqs(&events);
    assert_eq!(got.len(), total, "every line");
    let dups: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "duplicated: {dups:?}");
    assert_eq!(*got.keys().last().unwrap(), total as u64 - 1);
    drop(cleanup);
}

struct GleanerContainer(String);

impl Drop for GleanerContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Container start (the engine's `State.StartedAt`) → its first line
/// received by an HTTP server, over `GLEANER_DOCKER_CONTAINERS` containers
/// started one after another, with the default batch linger (200 ms).
/// Prints p50 / p99; asserts every first line arrives, tagged right.
#[test]
fn container_start_to_first_line_latency() {
    let env = Env::new();
    let c = Containers::new();
    let sink = crate::http_sink::Sink::start(&[]);
    let config = env.config(&format!(
        r#"  - name: containers
    inputs:
      - type: docker
        {include}
    flushers:
{http}
"#,
        include = c.include(),
        http = crate::delivery::http_flusher(&sink),
    ));
    let agent = start(&env, &config);
    env.wait_log("Connected to the Docker engine", 1);
    let n = short_lived();
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("lat{i}");
        c.run(&name, &[], &format!("echo first-{i}; sleep 1"));
        names.push(c.name(&name));
        // One at a time, so the figure is the agent's, not the engine's queue.
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_until("every container's first line", || sink.events().len() >= n);
    let mut first: BTreeMap<String, std::time::SystemTime> = BTreeMap::new();
    for r in sink.state.lock().unwrap().requests.iter() {
        for e in json_lines(&r.body) {
            let name = s(&e, "container.name").to_owned();
            let i: usize = name.rsplit("lat").next().unwrap().parse().unwrap();
            assert_eq!(s(&e, "message"), format!("first-{i}"));
            first.entry(name).or_insert(r.at);
        }
    }
    assert_eq!(first.len(), n);
    let mut args = vec!["inspect", "-f", "{{.Name}} {{.State.StartedAt}}"];
    args.extend(names.iter().map(String::as_str));
    let mut lat = Vec::new();
    for line in docker(&args).lines() {
        let (name, started) = line.split_once(' ').unwrap();
        let started = humantime::parse_rfc3339(started).unwrap();
        let got = first[name.trim_start_matches('/')];
        lat.push(
            got.duration_since(started)
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0,
        );
    }
    lat.sort_by(f64::total_cmp);
    eprintln!(
        "container start -> first line delivered over {n} containers: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    stop(agent);
}

/// User + system CPU seconds of process `pid` so far.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// `GLEANER_DOCKER_LOGGERS` containers (4 in the suite; 50 for the
/// figures) each log 1 MB/s (100 lines of 1 KiB every 100 ms) for
/// `GLEANER_DOCKER_LOGGER_SECS` seconds: every line arrives exactly once;
/// the agent's CPU per GB is printed.
#[test]
fn concurrent_loggers_lose_nothing() {
    let (env, c, agent) = start_agent("");
    let loggers = knob("GLEANER_DOCKER_LOGGERS", 4);
    let secs = knob("GLEANER_DOCKER_LOGGER_SECS", 3);
    let ticks = secs * 10;
    let pad = "p".repeat(1000);
    // Created first, then started by one command, so they really overlap.
    let script = format!(
        "i=0; while [ $i -lt {ticks} ]; do yes \"$HOSTNAME $i {pad}\" | head -n 100; sleep 0.1; i=$((i+1)); done"
    );
    let label = format!("{LABEL}={}", c.run);
    let names: Vec<String> = (0..loggers)
        .map(|k| c.name(&format!("logger{k}")))
        .collect();
    for name in &names {
        docker(&[
            "create", "--name", name, "--label", &label, IMAGE, "sh", "-c", &script,
        ]);
    }
    let dockerd = Command::new("pidof")
        .arg("dockerd")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        });
    let dockerd_cpu0 = dockerd.map(cpu_secs);
    let cpu0 = cpu_secs(agent.id());
    let t0 = Instant::now();
    let mut start = vec!["start"];
    start.extend(names.iter().map(String::as_str));
    docker(&start);
    let expected = loggers * ticks * 100;
    wait_events(&env, expected);
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(agent.id()) - cpu0;
    let got = events(&env);
    assert_eq!(got.len(), expected, "every line exactly once");
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut bytes = 0usize;
    for e in &got {
        let msg = s(e, "message");
        bytes += msg.len() + 1;
        let mut parts = msg.splitn(3, ' ');
        let key = (
            s(e, "container.name").to_owned(),
            parts.nth(1).unwrap().to_owned(),
        );
        *per.entry(key).or_insert(0) += 1;
    }
    assert_eq!(per.len(), loggers * ticks);
    assert!(
        per.values().all(|n| *n == 100),
        "100 lines per tick per container"
    );
    let engine = match (dockerd, dockerd_cpu0) {
        (Some(pid), Some(c0)) => format!("; dockerd CPU {:.1} s", cpu_secs(pid) - c0),
        _ => String::new(),
    };
    eprintln!(
        "{loggers} containers x 1 MB/s for {secs} s: {expected} lines, {:.1} MB in {wall:.1} s; agent CPU {cpu:.2} s = {:.1} CPU s/GB{engine}",
        bytes as f64 / 1e6,
        cpu / (bytes as f64 / 1e9)
    );
    stop(agent);
}

fn memchr_count(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

/// A unix-socket proxy in front of the real engine that can be cut off:
/// while down it closes every open connection and every new one at once,
/// as an engine that is restarting or unreachable looks to a client.
struct EngineProxy {
    path: PathBuf,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<std::os::unix::net::UnixStream>>>,
}

impl EngineProxy {
    fn start(path: PathBuf) -> EngineProxy {
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::sync::atomic::Ordering;
        let listener = UnixListener::bind(&path).unwrap();
        let proxy = EngineProxy {
            path,
            up: Default::default(),
            conns: Default::default(),
        };
        proxy.up.store(true, Ordering::SeqCst);
        let (up, conns) = (proxy.up.clone(), proxy.conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(engine) = UnixStream::connect("/var/run/docker.sock") else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(engine.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), engine.try_clone().unwrap()),
                    (engine, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        proxy
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
        if !up {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

#[test]
fn discovery_reconnects_and_catches_up_on_containers_that_ran_while_it_was_cut_off() {
    let env = Env::new();
    let c = Containers::new();
    let proxy = EngineProxy::start(env.path("engine.sock"));
    let config = docker_pipeline(
        &env,
        &c,
        &format!("        endpoint: unix://{}", proxy.path.display()),
    );
    let agent = start(&env, &config);
    env.wait_log("Connected to the Docker engine", 1);
    c.run("before", &[], "echo before-1; echo before-2");
    wait_events(&env, 2);
    proxy.set_up(false);
    env.wait_log("Docker discovery failed", 1);
    // While cut off: one container runs to completion, one keeps running.
    let done = c.run(
        "during",
        &[],
        "i=0; while [ $i -lt 50 ]; do echo during-$i; i=$((i+1)); done",
    );
    docker(&["wait", &done]);
    c.run("running", &[], "echo running-1; sleep 30");
    proxy.set_up(true);
    let got = wait_events(&env, 2 + 50 + 1);
    env.wait_log("Connected to the Docker engine", 2);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(events(&env).len(), 53, "no duplicates");
    let during: Vec<&str> = got
        .iter()
        .filter(|e| s(e, "container.name") == c.name("during"))
        .map(|e| s(e, "message"))
        .collect();
    assert_eq!(
        during,
        (0..50).map(|i| format!("during-{i}")).collect::<Vec<_>>()
    );
    assert!(
        got.iter()
            .any(|e| s(e, "message") == "running-1" && s(e, "container.name") == c.name("running"))
    );
    stop(agent);
}

#[test]
fn json_file_rotation_by_the_engine_loses_and_duplicates_nothing() {
    let (env, c, agent) = start_agent("");
    // 100 KB files, 5 kept: 600 KB of output rotates about six times.
    let id = c.run(
        "rotating",
        &["--log-opt", "max-size=100k", "--log-opt", "max-file=5"],
        "i=0; while [ $i -lt 6000 ]; do echo \"seq=$i $HOSTNAME padding-padding-padding-padding-padding-padding-padding\"; i=$((i+1)); if [ $((i % 500)) = 0 ]; then sleep 0.1; fi; done",
    );
    docker(&["wait", &id]);
    let log_path = docker(&["inspect", "-f", "{{.LogPath}}", &id]);
    assert!(
        Path::new(&format!("{log_path}.1")).exists(),
        "the engine rotated the log"
    );
    wait_events(&env, 6000);
    std::thread::sleep(Duration::from_millis(500));
    let got = seqs(&env.path("out/events.ndjson"));
    assert_eq!(got.len(), 6000, "every line");
    assert!(got.values().all(|n| *n == 1), "no duplicates");
    // The tailer saw the rotation: the old file followed under its new
    // name (`-json.log.1` matches the target too) or read to its end from
    // the descriptor held, whichever it noticed first.
    let log = env.log();
    assert!(
        log.contains("File was rotated; reading the old file to its end.")
            || log.contains("File was renamed; still reading it."),
        "{log}"
    );
    stop(agent);
}

#[test]
fn removed_at_exit_containers_are_read_from_the_handle_held_or_counted() {
    let (env, c, agent) = start_agent("");
    let n = 8;
    for i in 0..n {
        // `docker run --rm` (attached) returns once the container is gone.
        c.docker(
            &["run", "--rm"],
            &format!("rm{i}"),
            &[],
            "i=0; while [ $i -lt 500 ]; do echo \"$HOSTNAME $i\"; i=$((i+1)); done",
        );
    }
    let missed = || {
        let agent_log = env.log();
        // Gone before the inspection, or before the tailer opened its log.
        agent_log.matches("its output could not be read").count()
            + agent_log
                .matches("The log of a container was removed before it could be read")
                .count()
    };
    let per_container = || {
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for e in &events(&env) {
            *per.entry(s(e, "container.name").to_owned()).or_insert(0) += 1;
        }
        per
    };
    // Every container ends read in full or counted as missed (no sleep:
    // a slow machine only takes longer).
    let settled =
        waited_for(|| per_container().values().filter(|n| **n == 500).count() + missed() >= n);
    assert!(
        settled,
        "every container read or counted: read {:?}, {} counted as missed; agent log:\n{}",
        per_container(),
        missed(),
        env.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    stop(agent);
    let missed = missed();
    let per = per_container();
    assert!(
        per.values().all(|n| *n == 500),
        "whole containers only: {per:?}"
    );
    assert_eq!(
        per.len() + missed,
        n,
        "each container read or counted as missed: {per:?}; agent log:\n{}",
        env.log()
    );
    eprintln!(
        "--rm containers: {} of {n} read in full, {missed} counted as missed",
        per.len()
    );
}

#[test]
fn a_created_container_keeps_its_target_through_resyncs_until_it_starts() {
    let env = Env::new();
    let c = Containers::new();
    let port = crate::kubernetes::free_port();
    let config = docker_pipeline_with(
        &env,
        &c,
        &format!("api: {{ address: \"127.0.0.1:{port}\" }}"),
        "        resync_interval: 100ms",
    );
    let mut agent = Reaper(Some(start(&env, &config)));
    env.wait_log("Connected to the Docker engine", 1);
    // The sum of a counter's series (this agent has one pipeline).
    let total = |name: &str| -> f64 {
        let (_, m) = crate::kubernetes::api_get(port, "/metrics");
        m.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let name = c.name("created");
    c.docker(&["create"], "created", &[], "echo one; echo two");
    wait_until("the created container's target", || {
        total("gleaner_input_targets_added_total") == 1.0
    });
    // Resyncs list running containers: one only created must keep its
    // target (its log is awaited, as from its `create` event). Twenty of
    // them take 2 s at least, past the second after which a dropped
    // target would be forgotten and counted as removed.
    let resyncs = total("gleaner_discovery_resyncs_total");
    wait_until("twenty resyncs", || {
        total("gleaner_discovery_resyncs_total") >= resyncs + 20.0
    });
    assert_eq!(total("gleaner_input_targets_removed_total"), 0.0);
    docker(&["start", &name]);
    let got = wait_events(&env, 2);
    let messages: Vec<&str> = got.iter().map(|e| s(e, "message")).collect();
    assert_eq!(messages, ["one", "two"]);
    assert!(got.iter().all(|e| s(e, "container.name") == name));
    // Its start found the target in place; nothing was missed.
    assert_eq!(total("gleaner_input_targets_added_total"), 1.0);
    assert_eq!(total("gleaner_input_targets_missed_total"), 0.0);
    assert_eq!(total("gleaner_discovery_containers_missed_total"), 0.0);
    stop(agent.take());
}
