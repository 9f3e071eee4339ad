//! The Kafka rows of `gleaner bench --destinations`: `gleaner run` ships
//! the same JSON lines through `builtin:kafka` to a local tansu broker
//! (memory storage; from the tools cache `scripts/setup.sh --sdks` fills,
//! or `GLEANER_TANSU`), until the broker's high watermarks add up to
//! every line. Skipped, with a note, when no broker binary is found.
//!
//! Owns the broker process and the rows' configs; measuring is `measure`'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use gleaner_kafka::cluster::Cluster;
use gleaner_kafka::consume::{FetchOptions, Fetcher, StartAt};
use gleaner_kafka::wire::ConnectOptions;

use super::BenchOptions;
use super::measure::{Running, Usage};

/// The rows: name, then the flusher config after `brokers` and `topic`.
pub const ROWS: [(&str, &str); 3] = [
    ("kafka", "compression: lz4"),
    ("kafka zstd", "compression: zstd"),
    ("kafka raw", "compression: lz4, encoding: raw"),
];

/// A tansu broker on a free port.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The tansu binary: `GLEANER_TANSU`, else the tools cache's.
fn tansu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GLEANER_TANSU") {
        return Some(PathBuf::from(p));
    }
    let tools = std::env::var_os("GLEANER_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
                .map(|c| c.join("gleaner/tools"))
        })?;
    Some(tools.join("bin/tansu")).filter(|p| p.exists())
}

impl Broker {
    /// Starts a broker, or says why there is none.
    pub fn start() -> anyhow::Result<Option<Broker>> {
        let Some(bin) = tansu() else {
            return Ok(None);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let broker = Broker {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&broker.addr).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(broker))
    }

    /// A watch of `topic`'s high watermarks (records written so far).
    pub fn watch(&self, topic: &str, partitions: i32) -> anyhow::Result<Watch> {
        let mut cluster = self.client();
        let parts: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_owned(), p)).collect();
        let start: HashMap<(String, i32), i64> = parts.iter().map(|tp| (tp.clone(), 0)).collect();
        // Each poll fetches from the last high watermark seen: at most one
        // new batch per partition comes back, with the new watermark.
        // (ListOffsets would be cheaper, but tansu 0.6.0 answers it with
        // the last batch's first offset + 1, short of the end.)
        let fetch = FetchOptions {
            max_wait_ms: 0,
            max_bytes: 1,
            partition_max_bytes: 1,
        };
        let fetcher = Fetcher::new(&mut cluster, fetch, StartAt::Earliest, &parts, &start)?;
        Ok(Watch {
            cluster,
            fetcher,
            ends: HashMap::new(),
        })
    }

    /// A client of this broker that does not create topics.
    pub fn client(&self) -> Cluster {
        let mut c = Cluster::new(
            vec![self.addr.clone()],
            ConnectOptions::new("gleaner-bench", Duration::from_secs(10)),
        );
        c.auto_create = false;
        c
    }
}

/// High watermarks of one topic, followed.
pub struct Watch {
    cluster: Cluster,
    fetcher: Fetcher,
    ends: HashMap<(String, i32), i64>,
}

impl Watch {
    /// Records in the topic so far.
    pub fn records(&mut self) -> anyhow::Result<u64> {
        for f in self
            .fetcher
            .fetch(&mut self.cluster, &crate::data::kafka::NativeCodecs)?
        {
            self.fetcher.seek(&f.partition, f.high_watermark);
            self.ends.insert(f.partition, f.high_watermark);
        }
        Ok(self.ends.values().map(|&o| o.max(0) as u64).sum())
    }
}

/// The flusher entry of row `cfg` to `topic`.
pub fn flusher(broker: &Broker, topic: &str, cfg: &str) -> String {
    format!(
        r#"{{ plugin: "builtin:kafka", config: {{ brokers: ["{a}"], topic: {topic}, {cfg} }}, grants: {{ hosts: ["{a}"] }} }}"#,
        a = broker.addr
    )
}

/// Runs `gleaner run` with `config` until `topic` holds `opts.lines`.
pub fn measure(
    exe: &Path,
    config: &Path,
    broker: &Broker,
    topic: &str,
    opts: &BenchOptions,
) -> anyhow::Result<Usage> {
    broker.client().create_topic(topic, 3, 1)?;
    let mut watch = broker.watch(topic, 3)?;
    let mut cmd = Command::new(exe);
    cmd.args(["run", "--config"])
        .arg(config)
        .env("GLEANER_LOG", "warn");
    let mut running = Running::start(&mut cmd)?;
    let usage = running.until(|| watch.records(), opts.lines)?;
    running.stop();
    Ok(usage)
}
