//! The `gleaner` binary: argument parsing and logging setup. Everything it
//! runs lives in the library (`control::agent` for `run` and `validate`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gleaner::control::agent;
use gleaner::tooling::plugin_cli::PluginCommand;

#[derive(Parser)]
#[command(
    name = "gleaner",
    version,
    about = "Log collector with WebAssembly processors and flushers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipelines of a config file until SIGTERM or SIGINT.
    Run {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Read the files present at start to their end, deliver everything,
        /// and exit (for one-off imports and demos).
        #[arg(long)]
        exit_on_eof: bool,
    },
    /// Check a config file, including each plugin's own config, and exit.
    Validate {
        /// The YAML config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Measure end-to-end throughput on generated nginx logs, next to a
    /// native baseline.
    Bench {
        /// Lines per scenario.
        #[arg(long, default_value_t = 2_000_000)]
        lines: u64,
        /// Runs per scenario and system; the tables show medians.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Working directory, kept afterwards (default: a directory on
        /// /dev/shm, removed).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Only run scenarios whose name contains this (raw, regex, json).
        #[arg(long)]
        filter: Option<String>,
        /// A peer collector run side by side: `fluent-bit=PATH`.
        #[arg(long)]
        peer: Vec<String>,
        /// Also measure an application writing this many MB/s.
        #[arg(long)]
        steady: Option<f64>,
        /// How long the steady writer writes, in seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Also ship JSON lines through every destination flusher
        /// (elasticsearch, loki, otlp, splunk-hec, clickhouse, s3) to a
        /// local sink, next to the file flusher.
        #[arg(long)]
        destinations: bool,
    },
    /// Show a running agent's pipelines and plugins live: events in and
    /// out per second, bytes read, queues, backlog, lag, losses, errors,
    /// traps, memory (from its `/metrics`).
    Top {
        /// The agent's API address (its `api.address`).
        #[arg(long, default_value = "127.0.0.1:8686")]
        api: std::net::SocketAddr,
        /// Time between samples.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
        /// Print one table and exit (for scripts).
        #[arg(long)]
        once: bool,
    },
    /// Print a sample of the events passing one stage of a running
    /// pipeline, as JSON lines, as they pass. Delivery is not affected.
    Tap {
        /// The pipeline.
        pipeline: String,
        /// `input` (what the inputs read), `processor:N` (what processor N
        /// puts out) or `flusher:N` (what flusher N is handed); N counts
        /// from 0 in config order, or is the plugin (`flusher:builtin:loki`).
        #[arg(long, default_value = "input")]
        stage: String,
        /// Events to print, then stop.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Events a second at most (the rest pass unseen).
        #[arg(long, default_value_t = 100)]
        rate: u32,
        /// The agent's API address (its `api.address`).
        #[arg(long, default_value = "127.0.0.1:8686")]
        api: std::net::SocketAddr,
    },
    /// Work with a running pipeline's dead letters.
    #[command(subcommand, name = "dead-letter")]
    DeadLetter(DeadLetterCommand),
    /// Work with plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Print the CustomResourceDefinitions of `GleanerPipeline` and
    /// `ClusterGleanerPipeline` (YAML, as in deploy/kubernetes/10-crd.yaml).
    Crd,
    /// The native baseline of `bench` (run by `bench` as a child process).
    #[command(hide = true)]
    BenchNative {
        #[arg(long, value_enum)]
        mode: gleaner::tooling::bench::NativeMode,
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// Compile a plugin component (read from stdin) for the plugin engine
    /// into a cache file (run by the agent as a child process).
    #[command(hide = true)]
    CompilePlugin {
        /// For the engine with epoch deadlines (without them if absent).
        #[arg(long)]
        epoch: bool,
        /// Where to write the artifact.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run a command and print its wall time, CPU time and peak RSS as
    /// JSON (as `bench` measures its children). Measuring through this
    /// small process keeps a large parent's memory out of the child's peak
    /// RSS, which Linux carries across fork and exec.
    #[command(hide = true)]
    Measure {
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

#[derive(Subcommand)]
enum DeadLetterCommand {
    /// Send a pipeline's dead letters back through it, each at the stage
    /// that gave it up, once each; what is delivered leaves the
    /// dead-letter file. Waits until all are delivered.
    Replay {
        /// The pipeline.
        pipeline: String,
        /// Only records dead-lettered at or after this time (RFC 3339, or
        /// a duration back from now such as `2h`).
        #[arg(long)]
        since: Option<String>,
        /// Only records dead-lettered before this time.
        #[arg(long)]
        until: Option<String>,
        /// Return once the agent has taken the records, without waiting.
        #[arg(long)]
        no_wait: bool,
        /// The agent's API address (its `api.address`).
        #[arg(long, default_value = "127.0.0.1:8686")]
        api: std::net::SocketAddr,
    },
}

/// The agent's log on stderr, one event at a time, with every value
/// resolved from `${…}` in the config hidden (plugin output and error
/// messages could otherwise echo a secret).
struct RedactedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactedStderr {
    type Writer = RedactedEvent;

    fn make_writer(&'a self) -> RedactedEvent {
        RedactedEvent(Vec::with_capacity(256))
    }
}

/// One log event, written out (redacted) when it is complete.
struct RedactedEvent(Vec<u8>);

impl std::io::Write for RedactedEvent {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedEvent {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let out = gleaner::config::secrets::redact(&text);
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), out.as_bytes());
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(RedactedStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GLEANER_LOG")
                .unwrap_or_else(|_| "info,wasmtime=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    if let Ok(exe) = std::env::current_exe() {
        gleaner::plugin::compile_in(exe);
    }
    let result = match cli.command {
        Command::CompilePlugin { epoch, out } => {
            let mut wasm = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut wasm)
                .map_err(anyhow::Error::from)
                .and_then(|_| gleaner::plugin::compile_to(epoch, &wasm, &out))
        }
        Command::Run {
            config,
            exit_on_eof,
        } => agent::run(&config, exit_on_eof),
        Command::Validate { config } => agent::validate(&config),
        Command::Bench {
            lines,
            runs,
            dir,
            filter,
            peer,
            steady,
            seconds,
            destinations,
        } => gleaner::tooling::bench::cli(
            gleaner::tooling::bench::BenchOptions {
                lines,
                runs,
                dir: PathBuf::new(),
                filter,
                peers: peer,
                steady: steady.map(|mbps| (mbps, seconds)),
                destinations,
            },
            dir,
        ),
        Command::Plugin(cmd) => match gleaner::tooling::plugin_cli::run(cmd) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e),
        },
        Command::Top {
            api,
            interval,
            once,
        } => gleaner::tooling::top::run(api, interval, once).map_err(anyhow::Error::from),
        Command::Tap {
            pipeline,
            stage,
            limit,
            rate,
            api,
        } => {
            let o = gleaner::tooling::tap::TapOptions {
                pipeline,
                stage,
                limit,
                rate,
            };
            gleaner::tooling::tap::run(api, &o)
                .map(|_| ())
                .map_err(anyhow::Error::from)
        }
        Command::DeadLetter(DeadLetterCommand::Replay {
            pipeline,
            since,
            until,
            no_wait,
            api,
        }) => gleaner::tooling::dead_letter::replay(
            api,
            &pipeline,
            (since.as_deref(), until.as_deref()),
            !no_wait,
        ),
        Command::Crd => gleaner::control::crd::types::crd_yaml()
            .map(|y| print!("{y}"))
            .map_err(anyhow::Error::from),
        Command::BenchNative {
            mode,
            input,
            output,
        } => gleaner::tooling::bench::native(mode, &input, &output).map(|_| ()),
        Command::Measure { command } => {
            // The child's stdout goes to stderr: stdout carries the figures.
            let mut child = std::process::Command::new(&command[0]);
            child.args(&command[1..]).stdout(std::io::stderr());
            gleaner::tooling::bench::run_measured(&mut child).map(|u| {
                println!(
                    r#"{{"wall":{},"cpu":{},"max_rss_kib":{}}}"#,
                    u.wall, u.cpu, u.max_rss_kib
                )
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}");
            eprintln!("error: {}", gleaner::config::secrets::redact(&text));
            ExitCode::from(2)
        }
    }
}
