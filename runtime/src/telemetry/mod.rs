//! Counters shared between the data path and whoever reports them (logs,
//! and `/metrics` through [`Exposition`]). Owns no I/O.

use std::sync::atomic::{AtomicU64, Ordering};

pub mod stats;

/// One counter of a stats struct, as declared once by [`counters!`]:
/// `/metrics`, the JSON API and the stop summary are views of it.
#[derive(Debug, Clone, Copy)]
pub struct CounterValue {
    /// The field name: the key in the JSON API and the stop summary.
    pub name: &'static str,
    /// The metric name without the `gleaner_` prefix.
    pub metric: &'static str,
    /// What it counts (the field's doc comment).
    pub help: &'static str,
    /// Its value now.
    pub value: u64,
}

/// Declares a struct of [`Counter`]s, each with its metric name and its
/// doc comment as the help text, plus `each()`, which lists them all with
/// their values. Other fields (histograms) follow in `extra { … }`.
macro_rules! counters {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                #[doc = $help:literal]
                $field:ident => $metric:literal,
            )*
        }
        $( extra { $( $(#[$xmeta:meta])* $xfield:ident : $xty:ty, )* } )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name {
            $(
                #[doc = $help]
                pub $field: $crate::telemetry::Counter,
            )*
            $( $( $(#[$xmeta])* pub $xfield: $xty, )* )?
        }

        impl $name {
            /// Every counter, in declaration order, with its value now.
            pub fn each(&self) -> impl Iterator<Item = $crate::telemetry::CounterValue> + '_ {
                [$(
                    $crate::telemetry::CounterValue {
                        name: stringify!($field),
                        metric: $metric,
                        help: $help.trim_ascii_start(),
                        value: self.$field.get(),
                    },
                )*]
                .into_iter()
            }
        }
    };
}
pub(crate) use counters;

/// `name=value` pairs, space-separated, of counters summed by name over
/// several structs of one kind (e.g. a pipeline's inputs): a stop summary.
pub fn summary<'a>(values: impl Iterator<Item = CounterValue> + 'a) -> String {
    let mut sums: Vec<(&'static str, u64)> = Vec::new();
    for v in values {
        match sums.iter_mut().find(|(n, _)| *n == v.name) {
            Some((_, total)) => *total += v.value,
            None => sums.push((v.name, v.value)),
        }
    }
    sums.iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

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

/// A value that goes up and down (bytes held, instances alive).
#[derive(Debug, Default)]
pub struct Gauge(std::sync::atomic::AtomicI64);

impl Gauge {
    /// Adds `n` (negative to take away).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value (never below 0).
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed).max(0) as u64
    }
}

/// Upper bounds of [`Histogram`] buckets, in microseconds (100 µs to 10 s).
pub const LATENCY_BUCKETS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram with fixed buckets ([`LATENCY_BUCKETS_US`]): one
/// relaxed atomic add per observation, no lock.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last slot is above the last bound.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: std::time::Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = LATENCY_BUCKETS_US.partition_point(|b| *b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket bound (seconds), then the total count
    /// and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let mut total = 0;
        let mut cumulative = Vec::with_capacity(LATENCY_BUCKETS_US.len());
        for (i, bound) in LATENCY_BUCKETS_US.iter().enumerate() {
            total += self.buckets[i].load(Ordering::Relaxed);
            cumulative.push((*bound as f64 / 1e6, total));
        }
        total += self.buckets[LATENCY_BUCKETS_US.len()].load(Ordering::Relaxed);
        (
            cumulative,
            total,
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }

    /// The smallest bucket bound (seconds) at or below which a share `q`
    /// of observations lie (`None` if empty or above the last bound).
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let (buckets, total, _) = self.snapshot();
        if total == 0 {
            return None;
        }
        let want = (q * total as f64).ceil() as u64;
        buckets.iter().find(|(_, c)| *c >= want).map(|(b, _)| *b)
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

    /// Adds a histogram's `_bucket`, `_sum` and `_count` samples.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &'static str,
        labels: &[(&str, &str)],
        h: &Histogram,
    ) {
        let (buckets, count, sum) = h.snapshot();
        let base = format!("gleaner_{name}");
        let family = self.families.entry(base).or_insert(Family {
            help,
            kind: "histogram",
            samples: Vec::new(),
        });
        let mut with = |suffix: &str, extra: Option<String>, v: f64| {
            let mut l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            l.extend(extra);
            let l = if l.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", l.join(","))
            };
            family.samples.push((format!("{suffix}{l}"), v));
        };
        for (bound, c) in buckets {
            with("_bucket", Some(format!("le=\"{bound}\"")), c as f64);
        }
        with("_bucket", Some("le=\"+Inf\"".into()), count as f64);
        with("_sum", None, sum);
        with("_count", None, count as f64);
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
            // Histogram samples carry their suffix before the labels.
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

    counters! {
        /// Test counters.
        pub struct TwoCounters {
            /// Things seen.
            seen => "test_seen_total",
            /// Things kept.
            kept => "test_kept_total",
        }
    }

    #[test]
    fn counters_are_declared_once_and_listed_with_name_metric_and_help() {
        let a = TwoCounters::default();
        a.seen.add(3);
        a.kept.inc();
        let b = TwoCounters::default();
        b.seen.add(2);
        let listed: Vec<_> = a
            .each()
            .map(|c| (c.name, c.metric, c.help, c.value))
            .collect();
        assert_eq!(
            listed,
            [
                ("seen", "test_seen_total", "Things seen.", 3),
                ("kept", "test_kept_total", "Things kept.", 1)
            ]
        );
        assert_eq!(summary(a.each().chain(b.each())), "seen=5 kept=1");
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        for us in [50, 100, 101, 3_000, 20_000_000] {
            h.observe(std::time::Duration::from_micros(us));
        }
        assert_eq!(h.quantile_bound(0.4), Some(0.0001));
        assert_eq!(h.quantile_bound(0.8), Some(0.005));
        assert_eq!(h.quantile_bound(1.0), None);
        let mut e = Exposition::default();
        e.histogram("call_seconds", "Calls.", &[("p", "a")], &h);
        let text = e.render();
        assert!(text.starts_with(
            "# HELP gleaner_call_seconds Calls.\n# TYPE gleaner_call_seconds histogram\n"
        ));
        for line in [
            "gleaner_call_seconds_bucket{p=\"a\",le=\"0.0001\"} 2\n",
            "gleaner_call_seconds_bucket{p=\"a\",le=\"0.00025\"} 3\n",
            "gleaner_call_seconds_bucket{p=\"a\",le=\"0.005\"} 4\n",
            "gleaner_call_seconds_bucket{p=\"a\",le=\"10\"} 4\n",
            "gleaner_call_seconds_bucket{p=\"a\",le=\"+Inf\"} 5\n",
            "gleaner_call_seconds_sum{p=\"a\"} 20.003251\n",
            "gleaner_call_seconds_count{p=\"a\"} 5\n",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
    }

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
