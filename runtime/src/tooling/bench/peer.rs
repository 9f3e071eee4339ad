//! The systems `gleaner bench` compares: the native baseline, Gleaner
//! (`gleaner run`) and Fluent Bit (`fluent-bit -c`), each with its config
//! for a scenario, its way of being run, and the check of its output (one
//! JSON object per input line, holding what the scenario must produce).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::measure::{Running, Steady, Usage, run_measured, steady};
use super::{BenchOptions, NGINX_REGEX, Records, Scenario};

/// Where a system writes, under its run directory `dir`.
fn output_of(dir: &Path) -> PathBuf {
    dir.join("out").join("out.ndjson")
}

/// A system under test.
#[derive(Debug, Clone)]
pub enum System {
    /// `gleaner bench-native`: one thread, no Wasm.
    Native,
    /// `gleaner run`.
    Gleaner,
    /// Fluent Bit at this path.
    FluentBit(PathBuf),
}

impl System {
    /// `fluent-bit=PATH`.
    pub fn parse_peer(spec: &str) -> anyhow::Result<Self> {
        match spec.split_once('=') {
            Some(("fluent-bit", path)) => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    bail!("--peer {spec}: {} is not a file", path.display());
                }
                Ok(System::FluentBit(path))
            }
            _ => bail!("--peer {spec}: expected fluent-bit=PATH"),
        }
    }

    /// Its name in the tables.
    pub fn name(&self) -> &'static str {
        match self {
            System::Native => "native",
            System::Gleaner => "gleaner",
            System::FluentBit(_) => "fluent-bit",
        }
    }

    /// Writes its config for `scenario` reading `input`, in `dir` (state
    /// and output go there too); returns the config's path.
    pub fn config(
        &self,
        dir: &Path,
        scenario: &Scenario,
        input: &Path,
        opts: &BenchOptions,
    ) -> anyhow::Result<PathBuf> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("out"))?;
        let output = output_of(dir);
        let text = match self {
            System::Native => String::new(),
            System::Gleaner => {
                let processors = match scenario.name {
                    "regex" => format!(
                        "[ {{ plugin: builtin:parse-regex, config: {{ pattern: {}, types: {{ status: int, body_bytes_sent: int }} }} }} ]",
                        serde_json::to_string(NGINX_REGEX)?
                    ),
                    // As Fluent Bit's json parser: the parsed line is not kept.
                    "json" => "[ { plugin: builtin:parse-json, config: { keep_body: false } } ]"
                        .to_owned(),
                    _ => "[]".to_owned(),
                };
                format!(
                    r#"data_dir: {dir}/state
plugin_cache_dir: {cache}
pipelines:
  - name: bench
    inputs: [ {{ type: file, paths: ["{input}"], start_at: beginning }} ]
    processors: {processors}
    flushers:
      - plugin: builtin:file
        config: {{ path: "{output}", max_bytes: 100000000000 }}
        grants: {{ dirs: ["{dir}/out"] }}
"#,
                    dir = dir.display(),
                    cache = opts.dir.join("plugin-cache").display(),
                    input = input.display(),
                    output = output.display(),
                )
            }
            System::FluentBit(_) => {
                // Its best settings on this kind of machine (shared/peers).
                let parser = match scenario.name {
                    "regex" => "      parser: nginx\n",
                    "json" => "      parser: json\n",
                    _ => "",
                };
                // Onigmo spells named groups `(?<name>…)`.
                let regex = NGINX_REGEX.replace("(?P<", "(?<").replace('\'', "''");
                format!(
                    r#"service: {{ flush: 0.05, grace: 2, log_level: warn }}
parsers:
  - name: nginx
    format: regex
    regex: '{regex}'
    types: status:integer body_bytes_sent:integer
  - name: json
    format: json
pipeline:
  inputs:
    - name: tail
      path: {input}
      read_from_head: true
      db: {dir}/tail.db
      buffer_chunk_size: 256k
      buffer_max_size: 256k
      mem_buf_limit: 32M
{parser}  outputs:
    - name: file
      match: "*"
      file: {output}
      format: plain
"#,
                    input = input.display(),
                    dir = dir.display(),
                    output = output.display(),
                )
            }
        };
        let path = dir.join("config.yaml");
        std::fs::write(&path, text)?;
        Ok(path)
    }

    fn command(&self, exe: &Path, config: &Path) -> Command {
        let mut cmd = match self {
            System::FluentBit(path) => Command::new(path),
            _ => Command::new(exe),
        };
        match self {
            System::FluentBit(_) => cmd.arg("-c").arg(config),
            _ => cmd.args(["run", "--config"]).arg(config),
        };
        cmd.env("GLEANER_LOG", "warn");
        cmd
    }

    /// One run over the whole of `input`, verified.
    pub fn throughput(
        &self,
        exe: &Path,
        scenario: &Scenario,
        input: &Path,
        opts: &BenchOptions,
    ) -> anyhow::Result<Usage> {
        let dir = opts.dir.join(self.name());
        let config = self.config(&dir, scenario, input, opts)?;
        let output = output_of(&dir);
        let usage = match self {
            System::Native => {
                let mode = format!("{:?}", scenario.native).to_lowercase();
                run_measured(
                    Command::new(exe)
                        .args(["bench-native", "--mode", &mode, "--input"])
                        .arg(input)
                        .arg("--output")
                        .arg(&output),
                )?
            }
            _ => {
                let mut running = Running::start(&mut self.command(exe, &config))?;
                let usage = running.until_lines(&output, opts.lines)?;
                running.stop();
                usage
            }
        };
        self.verify(scenario, &output, opts.lines)?;
        std::fs::remove_dir_all(&dir)?;
        Ok(usage)
    }

    /// A steady run: an empty file, the collector started on it, then an
    /// application writing at the rate.
    pub fn steady(
        &self,
        exe: &Path,
        scenario: &Scenario,
        rate: (f64, u64),
        opts: &BenchOptions,
    ) -> anyhow::Result<Steady> {
        let dir = opts.dir.join(format!("steady-{}", self.name()));
        let input = opts.dir.join(format!("steady-{}.log", scenario.name));
        std::fs::write(&input, b"")?;
        let config = self.config(&dir, scenario, &input, opts)?;
        let output = output_of(&dir);
        let mut running = Running::start(&mut self.command(exe, &config))?;
        let mut records = Records::new(scenario.shape);
        let m = steady(&mut running, &input, &output, rate, &mut |l| {
            records.next_into(l)
        })?;
        running.stop();
        std::fs::remove_dir_all(&dir)?;
        std::fs::remove_file(&input)?;
        Ok(m)
    }

    /// Checks every output line: a JSON object with the message (raw) or
    /// the parsed `status`, a number (regex, json), `lines` of them.
    fn verify(&self, scenario: &Scenario, output: &Path, lines: u64) -> anyhow::Result<()> {
        let file = std::fs::File::open(output)
            .with_context(|| format!("no output at {}", output.display()))?;
        let key = match (scenario.name, self) {
            ("raw", System::FluentBit(_)) => "log",
            ("raw", _) => "message",
            _ => "status",
        };
        let mut n = 0u64;
        for line in std::io::BufReader::with_capacity(1 << 20, file).lines() {
            let line = line?;
            let v: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("output line {} is not JSON: {line}", n + 1))?;
            if v.get(key).is_none_or(serde_json::Value::is_null) {
                bail!("output line {} has no {key}: {line}", n + 1);
            }
            if key == "status" && !v[key].is_u64() {
                bail!("output line {}: status is not a number: {line}", n + 1);
            }
            n += 1;
        }
        if n != lines {
            bail!("{n} records in the output for {lines} input lines");
        }
        Ok(())
    }
}
