//! Counters shared between the data path and whoever reports them (logs,
//! and `/metrics` through [`Exposition`]). Owns no I/O.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Metrics in the Prometheus text format (version 0.0.4): samples are
/// grouped into families, each written once with its `# HELP` and
/// `# TYPE`, in name order.
#[derive(Debug, Default)]
pub struct Exposition {
    families: std::collections::BTreeMap<String, Family>,
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

impl Exposition {
    /// Adds a counter sample (`name` gets the `gleaner_` prefix).
    pub fn counter(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.sample(name, help, "counter", labels, v);
    }

    /// Adds a gauge sample.
    pub fn gauge(&mut self, name: &str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.sample(name, help, "gauge", labels, v);
    }

    fn sample(
        &mut self,
        name: &str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        v: f64,
    ) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
            .collect();
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        self.families
            .entry(format!("gleaner_{name}"))
            .or_insert(Family {
                help,
                kind,
                samples: Vec::new(),
            })
            .samples
            .push((labels, v));
    }

    /// The text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, f) in &self.families {
            out.push_str(&format!(
                "# HELP {name} {}\n# TYPE {name} {}\n",
                f.help, f.kind
            ));
            for (labels, v) in &f.samples {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        }
        out
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_once_with_escaped_labels() {
        let mut e = Exposition::default();
        e.counter("x_total", "Xs.", &[("pipeline", "a\"b")], 2.0);
        e.gauge("up", "Up.", &[], 1.0);
        e.counter("x_total", "Xs.", &[("pipeline", "c")], 0.5);
        assert_eq!(
            e.render(),
            "# HELP gleaner_up Up.\n# TYPE gleaner_up gauge\ngleaner_up 1\n\
             # HELP gleaner_x_total Xs.\n# TYPE gleaner_x_total counter\n\
             gleaner_x_total{pipeline=\"a\\\"b\"} 2\ngleaner_x_total{pipeline=\"c\"} 0.5\n"
        );
    }
}
