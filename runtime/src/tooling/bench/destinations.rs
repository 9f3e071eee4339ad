//! `gleaner bench --destinations`: JSON lines parsed (`parse-json`) and
//! shipped by `gleaner run` through each first-party destination flusher
//! to a local sink that answers as the destination does ([`super::sink`]),
//! next to the `file` flusher: MB/s until the sink holds every line, CPU
//! seconds per GB and peak RSS of the agent, and its CPU relative to the
//! `file` flusher's (what encoding the protocol in Wasm and sending it
//! costs).
//!
//! Owns the destination configs and their table; measuring is `measure`'s.

use std::path::Path;

use anyhow::Context;

use super::measure::{Running, Usage, run_measured};
use super::sink::Sink;
use super::{BenchOptions, Shape, generate, median_of};

/// Each row: its name, the flusher, and the flusher's config for a sink
/// at `ADDR`. Compression is off where it is optional, so the rows compare
/// the encoding; `s3 gzip` is the S3 flusher as configured by default.
const DESTINATIONS: [(&str, &str, &str); 8] = [
    ("file", "file", ""),
    (
        "elasticsearch",
        "elasticsearch",
        r#"{ url: "http://ADDR", index: bench }"#,
    ),
    (
        "loki",
        "loki",
        r#"{ url: "http://ADDR", labels: { job: bench } }"#,
    ),
    (
        "otlp",
        "otlp",
        r#"{ url: "http://ADDR", compression: none }"#,
    ),
    (
        "splunk-hec",
        "splunk-hec",
        r#"{ url: "http://ADDR", token: bench }"#,
    ),
    (
        "clickhouse",
        "clickhouse",
        r#"{ url: "http://ADDR", table: bench }"#,
    ),
    (
        "s3",
        "s3",
        r#"{ endpoint: "http://ADDR", bucket: bench-bucket, compression: none, access_key_id: AK, secret_access_key: SK }"#,
    ),
    (
        "s3 gzip",
        "s3",
        r#"{ endpoint: "http://ADDR", bucket: bench-bucket, access_key_id: AK, secret_access_key: SK }"#,
    ),
];

fn config(
    dir: &Path,
    input: &Path,
    dest: &str,
    cfg: &str,
    addr: &str,
    opts: &BenchOptions,
) -> anyhow::Result<std::path::PathBuf> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("out"))?;
    let flusher = if let Some(entry) = dest.strip_prefix("entry:") {
        entry.to_owned()
    } else if dest == "file" {
        format!(
            r#"{{ plugin: builtin:file, config: {{ path: "{}/out/out.ndjson", max_bytes: 100000000000 }}, grants: {{ dirs: ["{}/out"] }} }}"#,
            dir.display(),
            dir.display()
        )
    } else {
        format!(
            r#"{{ plugin: "builtin:{dest}", config: {}, grants: {{ hosts: ["{addr}"] }} }}"#,
            cfg.replace("ADDR", addr)
        )
    };
    let text = format!(
        r#"data_dir: {dir}/state
plugin_cache_dir: {cache}
pipelines:
  - name: bench
    inputs: [ {{ type: file, paths: ["{input}"], start_at: beginning }} ]
    processors: [ {{ plugin: builtin:parse-json }} ]
    flushers: [ {flusher} ]
"#,
        dir = dir.display(),
        cache = opts.dir.join("plugin-cache").display(),
        input = input.display(),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs every destination `opts.runs` times and prints the table.
pub fn run(exe: &Path, opts: &BenchOptions) -> anyhow::Result<()> {
    let input = opts.dir.join("destinations.log");
    let bytes = generate(&input, opts.lines, Shape::Json)?;
    let sink = Sink::start()?;
    let addr = sink.addr.to_string();
    // Each flusher is compiled (or loaded) once, outside the figures.
    for (_, dest, cfg) in DESTINATIONS {
        let dir = opts.dir.join("warmup");
        let config = config(&dir, &input, dest, cfg, &addr, opts)?;
        run_measured(
            std::process::Command::new(exe)
                .args(["validate", "--config"])
                .arg(config)
                .stdout(std::process::Stdio::null()),
        )?;
    }
    let mut results: Vec<Vec<Usage>> = vec![Vec::new(); DESTINATIONS.len()];
    for _ in 0..opts.runs {
        for (i, (_, dest, cfg)) in DESTINATIONS.iter().enumerate() {
            let dir = opts.dir.join(format!("to-{dest}"));
            let config = config(&dir, &input, dest, cfg, &addr, opts)?;
            let mut cmd = std::process::Command::new(exe);
            cmd.args(["run", "--config"])
                .arg(&config)
                .env("GLEANER_LOG", "warn");
            let mut running = Running::start(&mut cmd)?;
            let usage = if *dest == "file" {
                running.until_lines(&dir.join("out/out.ndjson"), opts.lines)
            } else {
                let before = sink.records();
                running.until(|| Ok(sink.records() - before), opts.lines)
            }
            .with_context(|| format!("destination {dest}"))?;
            running.stop();
            std::fs::remove_dir_all(&dir)?;
            results[i].push(usage);
        }
    }
    // Kafka: a local broker, when one is installed.
    let broker = super::kafka::Broker::start()?;
    let mut rows: Vec<String> = DESTINATIONS.iter().map(|(r, _, _)| r.to_string()).collect();
    if let Some(broker) = &broker {
        // The flusher is compiled (or loaded) once, outside the figures.
        let dir = opts.dir.join("warmup");
        let entry = format!(
            "entry:{}",
            super::kafka::flusher(broker, "warmup", "acks: all")
        );
        run_measured(
            std::process::Command::new(exe)
                .args(["validate", "--config"])
                .arg(config(&dir, &input, &entry, "", &addr, opts)?)
                .stdout(std::process::Stdio::null()),
        )?;
        for (n, (row, cfg)) in super::kafka::ROWS.iter().enumerate() {
            let mut usages = Vec::new();
            for run in 0..opts.runs {
                let topic = format!("bench-{n}-{run}");
                let dir = opts.dir.join("to-kafka");
                let entry = format!("entry:{}", super::kafka::flusher(broker, &topic, cfg));
                let config = config(&dir, &input, &entry, "", &addr, opts)?;
                let usage = super::kafka::measure(exe, &config, broker, &topic, opts)
                    .with_context(|| format!("destination {row}"))?;
                std::fs::remove_dir_all(&dir)?;
                usages.push(usage);
            }
            rows.push(row.to_string());
            results.push(usages);
        }
    }
    let gb = bytes as f64 / 1e9;
    println!(
        "\nDestinations: {} JSON lines ({:.0} MB) through parse-json and the flusher to a local sink, {} run(s) each; medians (min–max)",
        opts.lines,
        bytes as f64 / 1e6,
        opts.runs
    );
    println!(
        "{:<14} {:>22} {:>9} {:>9} {:>12}",
        "flusher", "MB/s", "CPU s/GB", "peak RSS", "CPU vs file"
    );
    let file_cpu = median_of(results[0].iter().map(|u| u.cpu / gb).collect()).1;
    for (row, r) in rows.iter().zip(&results) {
        let (lo, mid, hi) = median_of(r.iter().map(|u| bytes as f64 / 1e6 / u.wall).collect());
        let cpu = median_of(r.iter().map(|u| u.cpu / gb).collect()).1;
        let rss = median_of(r.iter().map(|u| u.max_rss_kib as f64 / 1024.0).collect()).1;
        println!(
            "{row:<14} {mid:>7.1} ({lo:>5.1}–{hi:>5.1}) {cpu:>9.2} {rss:>6.0} MB {:>11.2}×",
            cpu / file_cpu
        );
    }
    if broker.is_none() {
        println!(
            "(no Kafka rows: tansu not found; `bash scripts/setup.sh --sdks` builds it, or set GLEANER_TANSU)"
        );
    }
    std::fs::remove_file(&input)?;
    Ok(())
}
