//! `gleaner top`: a running agent's pipelines and plugins, live — events
//! in and out per second, bytes read per second, queue depth, backlog and
//! delivery lag, losses, errors, traps and memory — from two samples of
//! its `/metrics` an interval apart. `--once` prints one table (for scripts
//! and tests); otherwise the table is redrawn every interval until Ctrl-C.
//!
//! Reads the agent's local API only; starts, stops and changes nothing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Why `top` could not read the agent.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The API did not answer.
    #[error(
        "cannot read http://{addr}/metrics: {source} (is the agent running with `api: {{address: {addr}}}`?)"
    )]
    Connect {
        /// Where it was asked.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// It answered something else than metrics.
    #[error("http://{0}/metrics did not answer 200 OK")]
    Status(SocketAddr),
}

/// One sample: every series' value, by metric name and label set.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    series: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Sample {
    /// Parses Prometheus text (as the agent writes it: no escapes in
    /// label values that matter here).
    pub fn parse(text: &str) -> Sample {
        let mut series = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((head, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match head.split_once('{') {
                Some((name, rest)) => (name, labels_of(rest.trim_end_matches('}'))),
                None => (head, BTreeMap::new()),
            };
            series.push((name.to_owned(), labels, value));
        }
        Sample { series }
    }

    /// The sum of `name` over the series whose labels include `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && with
                        .iter()
                        .all(|(k, v)| labels.get(*k).is_some_and(|x| x == v))
            })
            .map(|(_, _, v)| v)
            // An empty sum is -0.0; shown as 0.
            .sum::<f64>()
            + 0.0
    }

    /// The values label `key` takes on `name`'s series, in order.
    fn values_of(&self, name: &str, key: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .series
            .iter()
            .filter(|(n, _, _)| n == name)
            .filter_map(|(_, labels, _)| labels.get(key).cloned())
            .collect();
        out.dedup();
        out
    }

    /// (pipeline, stage, plugin) of every plugin running.
    fn plugins(&self) -> Vec<(String, String, String)> {
        self.series
            .iter()
            .filter(|(n, _, _)| n == "gleaner_plugin_calls_total")
            .filter_map(|(_, l, _)| {
                Some((
                    l.get("pipeline")?.clone(),
                    l.get("stage")?.clone(),
                    l.get("plugin")?.clone(),
                ))
            })
            .collect()
    }
}

fn labels_of(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        out.insert(
            key.trim_start_matches(',').to_owned(),
            after[..end].to_owned(),
        );
        rest = &after[end + 1..];
    }
    out
}

/// Reads `/metrics` from the agent at `addr`.
pub fn fetch(addr: SocketAddr) -> Result<Sample, TopError> {
    let connect = |source| TopError::Connect { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(connect)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(connect)?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(connect)?;
    let mut body = String::new();
    stream.read_to_string(&mut body).map_err(connect)?;
    let (head, text) = body.split_once("\r\n\r\n").unwrap_or((&body, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(TopError::Status(addr));
    }
    Ok(Sample::parse(text))
}

fn rate(before: &Sample, after: &Sample, secs: f64, name: &str, with: &[(&str, &str)]) -> f64 {
    ((after.sum(name, with) - before.sum(name, with)) / secs).max(0.0)
}

fn human(v: f64) -> String {
    const UNITS: [&str; 5] = ["", "k", "M", "G", "T"];
    let mut v = v;
    let mut u = 0;
    while v.abs() >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 && v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

/// The table for two samples `secs` apart.
pub fn render(before: &Sample, after: &Sample, secs: f64) -> String {
    let mut out = String::new();
    let rss = after.sum("gleaner_process_resident_memory_bytes", &[]);
    out.push_str(&format!(
        "gleaner top: {} pipelines, agent RSS {}B, rates over {secs:.1} s\n\n",
        after.values_of("gleaner_pipeline_up", "pipeline").len(),
        human(rss)
    ));
    out.push_str(&format!(
        "{:<24} {:>9} {:>9} {:>10} {:>9} {:>9} {:>6} {:>9} {:>9} {:>8} {:>8}\n",
        "PIPELINE",
        "IN/s",
        "OUT/s",
        "READ B/s",
        "IN",
        "OUT",
        "QUEUE",
        "BACKLOG",
        "LAG",
        "DEAD",
        "DROPPED"
    ));
    for p in after.values_of("gleaner_pipeline_up", "pipeline") {
        let with = [("pipeline", p.as_str())];
        let r = |name: &str| rate(before, after, secs, name, &with);
        let v = |name: &str| after.sum(name, &with);
        out.push_str(&format!(
            "{:<24} {:>9} {:>9} {:>10} {:>9} {:>9} {:>6} {:>9} {:>9} {:>8} {:>8}\n",
            p,
            human(r("gleaner_pipeline_events_in_total")),
            human(r("gleaner_pipeline_events_delivered_total")),
            human(r("gleaner_input_bytes_total")),
            human(v("gleaner_pipeline_events_in_total")),
            human(v("gleaner_pipeline_events_delivered_total")),
            human(v("gleaner_pipeline_queue_batches")),
            human(v("gleaner_input_backlog_bytes")),
            human(v("gleaner_input_checkpoint_lag_bytes")),
            human(v("gleaner_pipeline_events_dead_lettered_total")),
            human(v("gleaner_pipeline_events_dropped_total")),
        ));
    }
    out.push_str(&format!(
        "\n{:<24} {:<11} {:<28} {:>9} {:>9} {:>7} {:>6} {:>9}\n",
        "PIPELINE", "STAGE", "PLUGIN", "CALLS/s", "EVENTS/s", "ERRORS", "TRAPS", "MEMORY"
    ));
    for (p, stage, plugin) in after.plugins() {
        let with = [
            ("pipeline", p.as_str()),
            ("stage", stage.as_str()),
            ("plugin", plugin.as_str()),
        ];
        out.push_str(&format!(
            "{:<24} {:<11} {:<28} {:>9} {:>9} {:>7} {:>6} {:>9}\n",
            p,
            stage,
            plugin,
            human(rate(
                before,
                after,
                secs,
                "gleaner_plugin_calls_total",
                &with
            )),
            human(rate(
                before,
                after,
                secs,
                "gleaner_plugin_events_in_total",
                &with
            )),
            human(after.sum("gleaner_plugin_errors_total", &with)),
            human(after.sum("gleaner_plugin_traps_total", &with)),
            human(after.sum("gleaner_plugin_memory_bytes", &with)) + "B",
        ));
    }
    out
}

/// Runs `gleaner top` against the agent at `addr`.
pub fn run(addr: SocketAddr, interval: Duration, once: bool) -> Result<(), TopError> {
    let mut before = fetch(addr)?;
    let mut at = Instant::now();
    loop {
        std::thread::sleep(interval);
        let after = fetch(addr)?;
        let secs = at.elapsed().as_secs_f64();
        let table = render(&before, &after, secs);
        let mut stdout = std::io::stdout().lock();
        if once {
            let _ = stdout.write_all(table.as_bytes());
            return Ok(());
        }
        // Home and clear, then the table: a terminal shows one screen.
        let _ = write!(stdout, "\x1b[H\x1b[2J{table}");
        let _ = stdout.flush();
        before = after;
        at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "# HELP x\n\
gleaner_pipeline_up{pipeline=\"web\",source=\"the config file\"} 1\n\
gleaner_pipeline_events_in_total{pipeline=\"web\"} 100\n\
gleaner_pipeline_events_delivered_total{pipeline=\"web\"} 90\n\
gleaner_input_bytes_total{pipeline=\"web\",input=\"0\"} 1000\n\
gleaner_input_bytes_total{pipeline=\"web\",input=\"1\"} 500\n\
gleaner_pipeline_queue_batches{pipeline=\"web\",stage=\"processors\"} 2\n\
gleaner_pipeline_queue_batches{pipeline=\"web\",stage=\"flusher0\"} 1\n\
gleaner_plugin_calls_total{pipeline=\"web\",stage=\"flusher0\",plugin=\"builtin:file\"} 10\n\
gleaner_plugin_events_in_total{pipeline=\"web\",stage=\"flusher0\",plugin=\"builtin:file\"} 90\n\
gleaner_plugin_traps_total{pipeline=\"web\",stage=\"flusher0\",plugin=\"builtin:file\"} 3\n\
gleaner_plugin_memory_bytes{pipeline=\"web\",stage=\"flusher0\",plugin=\"builtin:file\"} 1114112\n\
gleaner_process_resident_memory_bytes 22761472\n";

    #[test]
    fn two_samples_give_rates_per_pipeline_and_plugin() {
        let before = Sample::parse(BEFORE);
        let after = Sample::parse(
            &BEFORE
                .replace("} 100\n", "} 300\n")
                .replace(
                    "delivered_total{pipeline=\"web\"} 90",
                    "delivered_total{pipeline=\"web\"} 290",
                )
                .replace("} 1000\n", "} 5000\n")
                .replace(
                    "plugin=\"builtin:file\"} 10\n",
                    "plugin=\"builtin:file\"} 14\n",
                ),
        );
        assert_eq!(
            after.sum("gleaner_input_bytes_total", &[("pipeline", "web")]),
            5500.0
        );
        assert_eq!(after.sum("gleaner_pipeline_queue_batches", &[]), 3.0);
        let table = render(&before, &after, 2.0);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[0][..4], ["gleaner", "top:", "1", "pipelines,"]);
        assert_eq!(rows[0][6], "22.8MB,", "{table}");
        let web = rows.iter().find(|r| r.first() == Some(&"web")).unwrap();
        // in/s, out/s, read B/s, in, out, queue, backlog, lag, dead, dropped
        assert_eq!(
            web[1..],
            ["100", "100", "2.0k", "300", "290", "3", "0", "0", "0", "0"]
        );
        let plugin = rows
            .iter()
            .find(|r| r.get(2) == Some(&"builtin:file"))
            .unwrap();
        assert_eq!(
            plugin[..],
            [
                "web",
                "flusher0",
                "builtin:file",
                "2",
                "0",
                "0",
                "3",
                "1.1MB"
            ]
        );
    }

    #[test]
    fn labels_with_spaces_and_commas_parse() {
        let l = labels_of("pipeline=\"a\",source=\"the config file\",x=\"1,2\"");
        assert_eq!(l["source"], "the config file");
        assert_eq!(l["x"], "1,2");
    }
}
