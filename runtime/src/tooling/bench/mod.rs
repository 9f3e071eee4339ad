//! `gleaner bench`: throughput and memory of the path users run, side by
//! side with a peer collector and a native baseline, in one run.
//!
//! For each scenario (raw lines; nginx lines through a regex; JSON lines
//! through a JSON parser) it generates the input on the bench directory
//! (tmpfs by default), starts `gleaner run` on it as a user would, waits
//! until the output file holds every line, reads CPU time and peak RSS of
//! that process from `/proc`, and stops it with SIGTERM. With
//! `--peer fluent-bit=PATH` Fluent Bit runs the same scenario the same way
//! (its `tail` input, `out_file`), and the native baseline (one thread, no
//! Wasm, `bench-native`) shows what the work itself costs. Every output is
//! verified record by record. `--steady MBPS` adds the steady-rate mode: an
//! application writing at that rate, CPU % and RSS over the window;
//! `--destinations` ships the JSON lines through every destination flusher
//! to a local sink (`destinations`, `sink`).
//!
//! Owns no pipeline logic: it writes configs and runs binaries.

mod destinations;
mod generate;
mod kafka;
mod measure;
mod native;
mod peer;
mod sink;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

pub use self::generate::{Records, Shape, generate};
pub use self::measure::{Usage, run_measured};
pub use self::native::{NativeMode, native};
use self::peer::System;

/// The regex of the regex scenario (nginx combined, 10 named groups).
pub const NGINX_REGEX: &str = r#"^(?P<remote_addr>\S+) \S+ (?P<remote_user>\S+) \[(?P<time_local>[^\]]+)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>[^"]+)" (?P<status>\d{3}) (?P<body_bytes_sent>\d+) "(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)""#;

/// Options of `gleaner bench`.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Lines per scenario.
    pub lines: u64,
    /// Runs per scenario and system (the table shows medians).
    pub runs: usize,
    /// Working directory (inputs, outputs, state).
    pub dir: PathBuf,
    /// Only scenarios whose name contains this.
    pub filter: Option<String>,
    /// Peer collectors: `fluent-bit=PATH`.
    pub peers: Vec<String>,
    /// Steady-rate mode: MB/s and seconds.
    pub steady: Option<(f64, u64)>,
    /// Also ship through every destination flusher to a local sink.
    pub destinations: bool,
}

/// One workload.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// `raw`, `regex` or `json`.
    pub name: &'static str,
    /// How the input is written.
    pub shape: Shape,
    /// The native baseline's work.
    pub native: NativeMode,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "raw",
        shape: Shape::Nginx,
        native: NativeMode::Raw,
    },
    Scenario {
        name: "regex",
        shape: Shape::Nginx,
        native: NativeMode::Regex,
    },
    Scenario {
        name: "json",
        shape: Shape::Json,
        native: NativeMode::Json,
    },
];

fn median_of(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// Runs the benchmark and prints the tables.
pub fn run(opts: &BenchOptions) -> anyhow::Result<()> {
    let mut systems = vec![System::Native, System::Gleaner];
    for p in &opts.peers {
        systems.push(System::parse_peer(p)?);
    }
    let scenarios: Vec<Scenario> = SCENARIOS
        .into_iter()
        .filter(|s| {
            opts.filter
                .as_ref()
                .is_none_or(|f| s.name.contains(f.as_str()))
        })
        .collect();
    std::fs::create_dir_all(&opts.dir)?;
    let exe = std::env::current_exe()?;
    // Built-in plugins are compiled (or loaded) once, outside the figures.
    for s in &scenarios {
        let dir = opts.dir.join("warmup");
        let config = System::Gleaner.config(&dir, s, &opts.dir.join("none.log"), opts)?;
        run_measured(
            Command::new(&exe)
                .args(["validate", "--config"])
                .arg(config)
                .stdout(std::process::Stdio::null()),
        )?;
    }
    println!(
        "{} lines per scenario, {} run(s) each, in {}; medians (min–max)",
        opts.lines,
        opts.runs,
        opts.dir.display()
    );
    println!(
        "\n{:<6} {:<11} {:>22} {:>9} {:>9} {:>12} {:>9}",
        "", "system", "MB/s", "CPU s/GB", "peak RSS", "MB/s vs peer", "CPU vs peer"
    );
    for s in &scenarios {
        let input = opts.dir.join(format!("{}.log", s.name));
        let bytes = generate(&input, opts.lines, s.shape)?;
        let mut results: Vec<Vec<Usage>> = vec![Vec::new(); systems.len()];
        // Interleaved: a slow moment of the machine spreads over all systems.
        for _ in 0..opts.runs {
            for (i, system) in systems.iter().enumerate() {
                let usage = system
                    .throughput(&exe, s, &input, opts)
                    .with_context(|| format!("{} {}", s.name, system.name()))?;
                results[i].push(usage);
            }
        }
        let gb = bytes as f64 / 1e9;
        let rows: Vec<_> = results
            .iter()
            .map(|r| {
                let mbps = median_of(r.iter().map(|u| bytes as f64 / 1e6 / u.wall).collect());
                let cpu = median_of(r.iter().map(|u| u.cpu / gb).collect()).1;
                let rss = median_of(r.iter().map(|u| u.max_rss_kib as f64 / 1024.0).collect()).1;
                (mbps, cpu, rss)
            })
            .collect();
        let peer = systems
            .iter()
            .position(|s| matches!(s, System::FluentBit(_)));
        for (i, system) in systems.iter().enumerate() {
            let ((lo, mid, hi), cpu, rss) = rows[i];
            let (vs, cpu_vs) = match peer.filter(|p| *p != i) {
                Some(p) => (
                    format!("{:.2}×", mid / rows[p].0.1),
                    format!("{:.2}×", cpu / rows[p].1),
                ),
                None => (String::new(), String::new()),
            };
            println!(
                "{:<6} {:<11} {:>7.1} ({:>5.1}–{:>5.1}) {:>9.2} {:>6.0} MB {:>12} {:>9}",
                s.name,
                system.name(),
                mid,
                lo,
                hi,
                cpu,
                rss,
                vs,
                cpu_vs
            );
        }
        std::fs::remove_file(&input)?;
    }
    if let Some(rate) = opts.steady {
        steady(&exe, &systems, &scenarios, rate, opts)?;
    }
    if opts.destinations {
        destinations::run(&exe, opts)?;
    }
    println!(
        "\nMB/s = input bytes / seconds from start until the output holds every line (1 MB = 10^6 bytes); CPU = user + sys of the collector's process; peak RSS = VmHWM. Every output is verified record by record."
    );
    Ok(())
}

fn steady(
    exe: &Path,
    systems: &[System],
    scenarios: &[Scenario],
    (mbps, secs): (f64, u64),
    opts: &BenchOptions,
) -> anyhow::Result<()> {
    println!("\nsteady {mbps} MB/s for {secs} s, written a line per write:");
    println!(
        "{:<6} {:<11} {:>10} {:>14} {:>15}",
        "", "system", "CPU %", "RSS (window)", "peak at start"
    );
    for s in scenarios.iter().filter(|s| s.name != "json") {
        for system in systems.iter().filter(|s| !matches!(s, System::Native)) {
            let m = system
                .steady(exe, s, (mbps, secs), opts)
                .with_context(|| format!("steady {} {}", s.name, system.name()))?;
            println!(
                "{:<6} {:<11} {:>9.1}% {:>11.1} MB {:>12.1} MB",
                s.name,
                system.name(),
                m.cpu_pct,
                m.max_rss_kib as f64 / 1024.0,
                m.start_peak_kib as f64 / 1024.0
            );
        }
    }
    Ok(())
}

/// `gleaner bench`: runs in `dir`, or in a directory of its own on tmpfs
/// (`/dev/shm`, else the temporary directory), removed afterwards.
pub fn cli(mut opts: BenchOptions, dir: Option<PathBuf>) -> anyhow::Result<()> {
    if opts.runs == 0 || opts.lines == 0 {
        bail!("--runs and --lines must be at least 1");
    }
    let temporary = dir.is_none();
    opts.dir = dir.unwrap_or_else(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        base.join(format!("gleaner-bench-{}", std::process::id()))
    });
    let result = run(&opts);
    if temporary {
        let _ = std::fs::remove_dir_all(&opts.dir);
    }
    result
}
