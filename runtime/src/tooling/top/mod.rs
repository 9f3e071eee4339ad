//! `gleaner top`: a running agent's pipelines and plugins, live — events
//! in and out per second, bytes read per second, queue depth, backlog and
//! delivery lag, losses, errors, traps and memory — from two samples of
//! its `/metrics` an interval apart. `--once` prints one table (for scripts
//! and tests); in a terminal the live view (`tui`) redraws every interval
//! until `q`; piped, a table is printed every interval.
//!
//! Reads the agent's local API only; starts, stops and changes nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::tooling::api_client::{ApiClient, ClientError};

mod tui;

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
pub fn fetch(api: &ApiClient) -> Result<Sample, ClientError> {
    let (_, text) = api.call("GET", "/metrics")?;
    Ok(Sample::parse(&text))
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

/// The pipeline table's columns.
pub const PIPELINE_COLUMNS: [&str; 11] = [
    "PIPELINE", "IN/s", "OUT/s", "READ B/s", "IN", "OUT", "QUEUE", "BACKLOG", "LAG", "DEAD",
    "DROPPED",
];
/// The plugin table's columns.
pub const PLUGIN_COLUMNS: [&str; 8] = [
    "PIPELINE", "STAGE", "PLUGIN", "CALLS/s", "EVENTS/s", "ERRORS", "TRAPS", "MEMORY",
];

/// One pipeline's figures, in [`PIPELINE_COLUMNS`] order after the name.
#[derive(Debug, Clone)]
pub struct PipelineRow {
    /// The pipeline.
    pub name: String,
    /// In/s, out/s, read B/s, in, out, queue, backlog, lag, dead, dropped.
    pub values: [f64; 10],
}

/// One plugin's figures, in [`PLUGIN_COLUMNS`] order after the names.
#[derive(Debug, Clone)]
pub struct PluginRow {
    /// Pipeline, stage and plugin.
    pub names: [String; 3],
    /// Calls/s, events/s, errors, traps, memory bytes.
    pub values: [f64; 5],
}

/// What two samples `secs` apart show.
#[derive(Debug, Clone)]
pub struct View {
    /// The agent's resident memory.
    pub rss: f64,
    /// Seconds between the samples.
    pub secs: f64,
    /// Per pipeline.
    pub pipelines: Vec<PipelineRow>,
    /// Per plugin.
    pub plugins: Vec<PluginRow>,
}

impl View {
    /// The view of two samples `secs` apart.
    pub fn of(before: &Sample, after: &Sample, secs: f64) -> View {
        let pipelines = after
            .values_of("gleaner_pipeline_up", "pipeline")
            .into_iter()
            .map(|p| {
                let with = [("pipeline", p.as_str())];
                let r = |name: &str| rate(before, after, secs, name, &with);
                let v = |name: &str| after.sum(name, &with);
                let values = [
                    r("gleaner_pipeline_events_in_total"),
                    r("gleaner_pipeline_events_delivered_total"),
                    r("gleaner_input_bytes_total"),
                    v("gleaner_pipeline_events_in_total"),
                    v("gleaner_pipeline_events_delivered_total"),
                    v("gleaner_pipeline_queue_batches"),
                    v("gleaner_input_backlog_bytes"),
                    v("gleaner_input_checkpoint_lag_bytes"),
                    v("gleaner_pipeline_events_dead_lettered_total"),
                    v("gleaner_pipeline_events_dropped_total"),
                ];
                PipelineRow { name: p, values }
            })
            .collect();
        let plugins = after
            .plugins()
            .into_iter()
            .map(|(p, stage, plugin)| {
                let with = [
                    ("pipeline", p.as_str()),
                    ("stage", stage.as_str()),
                    ("plugin", plugin.as_str()),
                ];
                let values = [
                    rate(before, after, secs, "gleaner_plugin_calls_total", &with),
                    rate(before, after, secs, "gleaner_plugin_events_in_total", &with),
                    after.sum("gleaner_plugin_errors_total", &with),
                    after.sum("gleaner_plugin_traps_total", &with),
                    after.sum("gleaner_plugin_memory_bytes", &with),
                ];
                PluginRow {
                    names: [p, stage, plugin],
                    values,
                }
            })
            .collect();
        View {
            rss: after.sum("gleaner_process_resident_memory_bytes", &[]),
            secs,
            pipelines,
            plugins,
        }
    }

    /// The first line.
    pub fn title(&self) -> String {
        format!(
            "gleaner top: {} pipelines, agent RSS {}B, rates over {:.1} s",
            self.pipelines.len(),
            human(self.rss),
            self.secs
        )
    }

    /// A pipeline row's cells, as shown.
    pub fn pipeline_cells(row: &PipelineRow) -> Vec<String> {
        std::iter::once(row.name.clone())
            .chain(row.values.iter().map(|v| human(*v)))
            .collect()
    }

    /// A plugin row's cells, as shown.
    pub fn plugin_cells(row: &PluginRow) -> Vec<String> {
        let mut cells: Vec<String> = row.names.to_vec();
        cells.extend(row.values[..4].iter().map(|v| human(*v)));
        cells.push(human(row.values[4]) + "B");
        cells
    }
}

/// The table for two samples `secs` apart, as plain text.
pub fn render(before: &Sample, after: &Sample, secs: f64) -> String {
    let view = View::of(before, after, secs);
    let mut out = view.title() + "\n\n";
    let pipeline_line = |c: &[String]| {
        format!(
            "{:<24} {:>9} {:>9} {:>10} {:>9} {:>9} {:>6} {:>9} {:>9} {:>8} {:>8}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10]
        )
    };
    let plugin_line = |c: &[String]| {
        format!(
            "{:<24} {:<11} {:<28} {:>9} {:>9} {:>7} {:>6} {:>9}\n",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]
        )
    };
    out.push_str(&pipeline_line(&PIPELINE_COLUMNS.map(String::from)));
    for row in &view.pipelines {
        out.push_str(&pipeline_line(&View::pipeline_cells(row)));
    }
    out.push('\n');
    out.push_str(&plugin_line(&PLUGIN_COLUMNS.map(String::from)));
    for row in &view.plugins {
        out.push_str(&plugin_line(&View::plugin_cells(row)));
    }
    out
}

/// Runs `gleaner top` against the agent at `addr`: one table with
/// `once`, else the live view until `q` (plain redraws when stdout is not
/// a terminal).
pub fn run(addr: SocketAddr, interval: Duration, once: bool) -> Result<(), ClientError> {
    let api = ApiClient::new(addr);
    let mut before = fetch(&api)?;
    if !once && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return tui::run(&api, interval, before).map_err(|error| ClientError::Connect {
            addr,
            path: "/metrics".into(),
            error,
        });
    }
    let mut at = Instant::now();
    loop {
        std::thread::sleep(interval);
        let after = fetch(&api)?;
        let table = render(&before, &after, at.elapsed().as_secs_f64());
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(table.as_bytes());
        if once {
            return Ok(());
        }
        let _ = stdout.write_all(b"\n");
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
