//! `gleaner bench`: end-to-end throughput of the real binary on generated
//! nginx logs, next to a native baseline doing the same work in the same run.
//!
//! Each scenario runs as a child process (`gleaner run --exit-on-eof`, or
//! the hidden `gleaner bench-native`), so wall time, CPU time (user + sys)
//! and peak RSS come from `wait4` for exactly that process. Every run's
//! output is counted and must hold one JSON line per input line, so the
//! benchmark cannot report a fast wrong answer.
//!
//! Owns no pipeline logic: it writes configs and runs the binary.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

/// The regex of the "with a regex parser" scenarios (8 fields, nginx combined).
pub const NGINX_REGEX: &str = r#"^(?P<remote_addr>\S+) \S+ (?P<remote_user>\S+) \[(?P<time_local>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d{3}) (?P<body_bytes_sent>\d+) "(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)""#;

/// Options of a benchmark run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Size of the generated log, in MiB.
    pub mib: usize,
    /// Working directory (generated data and outputs).
    pub dir: PathBuf,
    /// Only run scenarios whose name contains this.
    pub filter: Option<String>,
}

/// Writes `mib` MiB of nginx combined-format lines to `path`; returns the
/// number of lines. Deterministic (fixed-seed generator).
pub fn generate(path: &Path, mib: usize) -> anyhow::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let target = (mib as u64) << 20;
    let mut written = 0u64;
    let mut lines = 0u64;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const PATHS: [&str; 6] = [
        "/",
        "/index.html",
        "/api/v1/users/42",
        "/static/app.min.js",
        "/login?next=%2Fcart",
        "/healthz",
    ];
    const AGENTS: [&str; 3] = [
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        "curl/8.5.0",
        "kube-probe/1.30",
    ];
    const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
    const STATUS: [u16; 6] = [200, 200, 200, 304, 404, 502];
    let mut line = String::with_capacity(256);
    while written < target {
        let r = next();
        line.clear();
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            r#"10.{}.{}.{} - - [21/Nov/2026:17:{:02}:{:02} +0000] "{} {} HTTP/1.1" {} {} "-" "{}""#,
            r % 256,
            (r >> 8) % 256,
            (r >> 16) % 256,
            (r >> 24) % 60,
            (r >> 30) % 60,
            METHODS[(r >> 36) as usize % METHODS.len()],
            PATHS[(r >> 40) as usize % PATHS.len()],
            STATUS[(r >> 44) as usize % STATUS.len()],
            (r >> 48) % 20000,
            AGENTS[(r >> 56) as usize % AGENTS.len()],
        );
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
        lines += 1;
    }
    out.flush()?;
    Ok(lines)
}

/// What the native baseline does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NativeMode {
    /// Read, split lines, batch, write JSON lines.
    Raw,
    /// The same plus the nginx regex into fields.
    Regex,
}

/// The native baseline: the work of `file input → [parse-regex] → file
/// flusher` in one thread with no Wasm, using the SDK's own batch builder
/// and JSON encoder so the output is byte-for-byte the same format.
pub fn native(mode: NativeMode, input: &Path, output: &Path) -> anyhow::Result<u64> {
    use gleaner_sdk::BatchBuilder;
    let re = regex::bytes::Regex::new(NGINX_REGEX)?;
    let names: Vec<(usize, String)> = re
        .capture_names()
        .enumerate()
        .filter_map(|(i, n)| n.map(|n| (i, n.to_owned())))
        .collect();
    let mut locs = re.capture_locations();
    let mut file = File::open(input)?;
    let mut out = File::create(output)?;
    let source = input.to_string_lossy().into_owned();
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    let mut json = Vec::with_capacity(4 << 20);
    let mut events = 0u64;
    let mut batch = BatchBuilder::with_capacity(1024, 1 << 20);
    let mut keys: Vec<(usize, gleaner_sdk::Key)> = Vec::new();
    batch.set_tag("source.path", &source);
    let flush =
        |batch: &mut BatchBuilder, json: &mut Vec<u8>, out: &mut File| -> std::io::Result<()> {
            let full = std::mem::take(batch).finish();
            batch.set_tag("source.path", &source);
            json.clear();
            gleaner_sdk::json::write_ndjson(&full, json);
            out.write_all(json)
        };
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let ts = crate::data::tail::now_nanos();
        let mut data = &buf[..n];
        while let Some(nl) = memchr::memchr(b'\n', data) {
            let line: &[u8] = if carry.is_empty() {
                &data[..nl]
            } else {
                carry.extend_from_slice(&data[..nl]);
                &carry
            };
            if keys.is_empty() && mode == NativeMode::Regex {
                // Interned once per batch, as the parse-regex plugin does.
                keys = names.iter().map(|(g, n)| (*g, batch.key(n))).collect();
            }
            let mut e = batch.push(ts, line);
            if mode == NativeMode::Regex && re.captures_read(&mut locs, line).is_some() {
                for (g, key) in &keys {
                    if let Some((a, b)) = locs.get(*g) {
                        e.field_by_key(*key, &String::from_utf8_lossy(&line[a..b]));
                    }
                }
            }
            events += 1;
            carry.clear();
            data = &data[nl + 1..];
            if batch.len() >= 1024 {
                flush(&mut batch, &mut json, &mut out)?;
                keys.clear();
            }
        }
        carry.extend_from_slice(data);
    }
    if !batch.is_empty() {
        flush(&mut batch, &mut json, &mut out)?;
    }
    Ok(events)
}

/// Resource use of one child process.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Wall time, seconds.
    pub wall: f64,
    /// User + system CPU time, seconds.
    pub cpu: f64,
    /// Peak resident set size, KiB.
    pub max_rss_kib: i64,
}

/// Runs `cmd` to completion (it must succeed) and measures it.
pub fn run_measured(cmd: &mut Command) -> anyhow::Result<Usage> {
    let started = Instant::now();
    let child = cmd.spawn().context("cannot start the benchmark child")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet waited for; pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = started.elapsed().as_secs_f64();
    if r != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("benchmark child failed with status {status}");
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Usage {
        wall,
        cpu: secs(ru.ru_utime) + secs(ru.ru_stime),
        max_rss_kib: ru.ru_maxrss,
    })
}

/// Lines in a file.
pub fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf)?;
        if r == 0 {
            return Ok(n);
        }
        n += memchr::memchr_iter(b'\n', &buf[..r]).count() as u64;
    }
}

fn pipeline_config(
    dir: &Path,
    name: &str,
    input: &Path,
    processors: &str,
) -> anyhow::Result<PathBuf> {
    let out = dir.join("out");
    let text = format!(
        r#"data_dir: {state}
pipelines:
  - name: {name}
    queue_batches: 16
    inputs:
      - type: file
        paths: ["{input}"]
        start_at: beginning
    processors: {processors}
    flushers:
      - plugin: builtin:file
        config: {{ path: "{out}/{name}.ndjson", max_bytes: 100000000000 }}
        grants: {{ dirs: ["{out}"] }}
"#,
        state = dir.join("state").display(),
        input = input.display(),
        out = out.display(),
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs the benchmark and prints the table.
pub fn run(opts: &BenchOptions) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    std::fs::create_dir_all(opts.dir.join("out"))?;
    let input = opts.dir.join("nginx.log");
    let started = Instant::now();
    let lines = generate(&input, opts.mib)?;
    let bytes = std::fs::metadata(&input)?.len();
    println!(
        "generated {lines} nginx lines, {:.0} MiB, in {:.1}s ({})",
        bytes as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64(),
        input.display()
    );
    let regex_json = serde_json::to_string(NGINX_REGEX)?;
    // `engine: wasm` (the default) runs the regex inside the plugin;
    // `engine: host` matches bodies with the host's regex kernel.
    let parse_with = |epoch: bool, engine: &str| {
        format!(
            "[ {{ plugin: builtin:parse-regex, config: {{ pattern: {regex_json}, engine: {engine} }}, limits: {{ epoch_deadline: {epoch} }} }} ]"
        )
    };
    let parse = |epoch: bool| parse_with(epoch, "wasm");
    let scenarios: Vec<(&str, Option<NativeMode>, String)> = vec![
        ("native-raw", Some(NativeMode::Raw), String::new()),
        ("wasm-raw", None, "[]".into()),
        ("native-regex", Some(NativeMode::Regex), String::new()),
        ("wasm-regex", None, parse(true)),
        ("wasm-regex-no-epoch", None, parse(false)),
        ("wasm-regex-host-kernel", None, parse_with(true, "host")),
    ];
    // Compile the plugins once, outside the measurements.
    let warm = pipeline_config(
        &opts.dir,
        "warmup",
        &opts.dir.join("none.log"),
        &parse(true),
    )?;
    run_measured(
        Command::new(&exe)
            .args(["validate", "--config"])
            .arg(&warm)
            .stdout(std::process::Stdio::null()),
    )?;
    let warm = pipeline_config(
        &opts.dir,
        "warmup",
        &opts.dir.join("none.log"),
        &parse(false),
    )?;
    run_measured(
        Command::new(&exe)
            .args(["validate", "--config"])
            .arg(&warm)
            .stdout(std::process::Stdio::null()),
    )?;

    println!(
        "\n{:<22} {:>9} {:>12} {:>11} {:>10} {:>9}",
        "scenario", "MB/s", "events/s", "CPU s/GB", "peak RSS", "vs native"
    );
    let mut native_mbps = 0.0;
    let mut wasm_raw_events_per_sec = 0.0;
    for (name, native_mode, processors) in scenarios {
        if opts
            .filter
            .as_ref()
            .is_some_and(|f| !name.contains(f.as_str()))
        {
            continue;
        }
        let output = opts.dir.join("out").join(format!("{name}.ndjson"));
        let _ = std::fs::remove_file(&output);
        let mut cmd = Command::new(&exe);
        match native_mode {
            Some(mode) => {
                let mode = if mode == NativeMode::Raw {
                    "raw"
                } else {
                    "regex"
                };
                cmd.args(["bench-native", "--mode", mode, "--input"])
                    .arg(&input)
                    .arg("--output")
                    .arg(&output);
            }
            None => {
                let config = pipeline_config(&opts.dir, name, &input, &processors)?;
                cmd.args(["run", "--exit-on-eof", "--config"])
                    .arg(config)
                    .env("GLEANER_LOG", "warn");
            }
        }
        let usage = run_measured(&mut cmd)?;
        let got = count_lines(&output)?;
        if got != lines {
            bail!("{name}: wrote {got} events for {lines} input lines");
        }
        let mbps = bytes as f64 / 1e6 / usage.wall;
        if native_mode.is_some() {
            native_mbps = mbps;
        }
        if name == "wasm-raw" {
            wasm_raw_events_per_sec = lines as f64 / usage.wall;
        }
        let ratio = if native_mode.is_some() {
            "1.00".to_owned()
        } else {
            format!("{:.2}", mbps / native_mbps)
        };
        println!(
            "{:<22} {:>9.1} {:>12.0} {:>11.2} {:>7.0} MiB {:>9}",
            name,
            mbps,
            lines as f64 / usage.wall,
            usage.cpu / (bytes as f64 / 1e9),
            usage.max_rss_kib as f64 / 1024.0,
            ratio
        );
        let _ = std::fs::remove_file(&output);
    }
    checkpoint_cost(&opts.dir, wasm_raw_events_per_sec)?;
    println!(
        "\nMB/s = input bytes / wall time (1 MB = 10^6 bytes); CPU = user + sys of the process; every run is checked to emit one JSON line per input line."
    );
    Ok(())
}

/// What acknowledgements and checkpoints cost, measured in this process and
/// set against the wasm-raw rate of this run (batches of 1,024 events).
fn checkpoint_cost(dir: &Path, events_per_sec: f64) -> anyhow::Result<()> {
    use crate::model::ack::{FileIdentity, FileTracker};
    use crate::state::checkpoint::CheckpointStore;
    let id = FileIdentity {
        dev: 1,
        ino: 1,
        fingerprint: 1,
        fingerprint_len: 1024,
        born_ns: 1,
    };
    let tracker = FileTracker::new(id, "/bench.log", 0);
    let n = 1_000_000u64;
    let started = Instant::now();
    for i in 0..n {
        // Two flushers hold each batch, as in a fan-out pipeline.
        let ack = tracker.register(i * 100);
        let second = ack.clone();
        drop(ack);
        drop(second);
    }
    let per_batch_ns = started.elapsed().as_nanos() as f64 / n as f64;
    let store = CheckpointStore::open(
        &dir.join("checkpoint-bench"),
        std::time::Duration::from_secs(3600),
    )?;
    let trackers: Vec<_> = (0..100)
        .map(|i| {
            let t = FileTracker::new(
                FileIdentity { ino: i, ..id },
                &format!("/var/log/app-{i}.log"),
                0,
            );
            store.track("bench/0", &t);
            t
        })
        .collect();
    let writes = 20;
    let started = Instant::now();
    for _ in 0..writes {
        store.write()?;
    }
    let per_write_ms = started.elapsed().as_secs_f64() * 1000.0 / writes as f64;
    drop(trackers);
    if events_per_sec > 0.0 {
        let batches_per_sec = events_per_sec / 1024.0;
        let ack_share = batches_per_sec * per_batch_ns / 1e9;
        let write_share = per_write_ms / 1000.0; // one write per second (checkpoint_interval 1s)
        println!(
            "\ncheckpointing: ack register+complete {per_batch_ns:.0} ns per batch, checkpoint file write (100 files, fsync) {per_write_ms:.2} ms per interval; at the wasm-raw rate that is {:.3} % of one core",
            (ack_share + write_share) * 100.0
        );
    }
    Ok(())
}

/// `gleaner bench`: runs the benchmark in `dir` (kept) or a temporary
/// directory (removed afterwards).
pub fn cli(mib: usize, dir: Option<PathBuf>, filter: Option<String>) -> anyhow::Result<()> {
    // A directory the user names is kept (data and all) for profiling; a
    // temporary one is removed.
    let (dir, temporary) = match dir {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("gleaner-bench-{}", std::process::id())),
            true,
        ),
    };
    let result = run(&BenchOptions {
        mib,
        dir: dir.clone(),
        filter,
    });
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}
