//! `/metrics`: the Prometheus text of every running pipeline (events
//! through each stage, queue depths, swaps and rollbacks), its inputs
//! (lines, bytes, files, backlog and checkpoint lag, optionally per file),
//! their discovery (containers added, relists, API errors) and its plugins (calls, latency histogram, events and bytes in and
//! out, traps, errors). Formats what reports hand it; reads nothing else.

use crate::control::progress::Progress;
use crate::control::supervisor::PipelineView;
use crate::telemetry::Exposition;

/// Writes every pipeline's counters, queues, plugins and read progress
/// to `e`.
pub fn pipelines(e: &mut Exposition, views: &[PipelineView], progress: &Progress, per_file: bool) {
    for v in views {
        let name = &v.name;
        let l = [("pipeline", name.as_str())];
        e.gauge(
            "pipeline_up",
            "1 for each running pipeline, by who runs it.",
            &[("pipeline", name), ("source", &v.owner)],
            1.0,
        );
        for c in v.stats.each() {
            e.counter(c.metric, c.help, &l, c.value as f64);
        }
        for (stage, depth) in &v.queues {
            e.gauge(
                "pipeline_queue_batches",
                "Batches waiting in front of a stage.",
                &[("pipeline", name), ("stage", stage)],
                *depth as f64,
            );
        }
        for (metric, help, n) in [
            (
                "pipeline_swaps_total",
                "Processor chains swapped in.",
                v.swap.swaps,
            ),
            (
                "pipeline_rollbacks_total",
                "Swapped-in processors rolled back.",
                v.swap.rollbacks,
            ),
        ] {
            e.counter(metric, help, &l, n as f64);
        }
        e.histogram(
                "pipeline_swap_pause_seconds",
                "Per processor swap: time the processor thread was held, plus the first new batch's extra time.",
                &l,
                &v.stats.swap_pause,
            );
        e.gauge(
            "pipeline_plugin_memory_bytes",
            "Linear memory of every live plugin instance of the pipeline, in bytes.",
            &l,
            v.plugins
                .iter()
                .map(|p| p.stats.memory_bytes.get())
                .sum::<u64>() as f64,
        );
        e.gauge(
            "pipeline_processors_on_probation",
            "1 while swapped-in processors are on probation.",
            &l,
            if v.swap.probation.is_some() { 1.0 } else { 0.0 },
        );
        for (i, d) in &v.discoveries {
            let i = i.to_string();
            let l = [("pipeline", name.as_str()), ("input", i.as_str())];
            for c in d.each() {
                e.counter(c.metric, c.help, &l, c.value as f64);
            }
        }
        for (i, input) in v.inputs.iter().enumerate() {
            let i = i.to_string();
            let l = [("pipeline", name.as_str()), ("input", i.as_str())];
            for c in input.each() {
                e.counter(c.metric, c.help, &l, c.value as f64);
            }
            e.gauge(
                "input_files_open",
                "Files open now.",
                &l,
                input
                    .files_opened
                    .get()
                    .saturating_sub(input.files_closed.get()) as f64,
            );
            let Some(p) = progress.input(&format!("{name}/{i}")) else {
                continue;
            };
            for (metric, help, n) in [
                (
                    "input_checkpoint_lag_bytes",
                    "Bytes in open files not yet delivered (checkpoints behind the files).",
                    p.checkpoint_lag_bytes,
                ),
                (
                    "input_backlog_bytes",
                    "Bytes in open files not yet read.",
                    p.backlog_bytes,
                ),
            ] {
                e.gauge(metric, help, &l, n as f64);
            }
            if per_file {
                for f in &p.per_file {
                    let fl = [
                        ("pipeline", name.as_str()),
                        ("input", i.as_str()),
                        ("path", f.path.as_str()),
                    ];
                    for (metric, help, n) in [
                        ("file_size_bytes", "Size of an open file.", f.size),
                        ("file_read_bytes", "Bytes of an open file read.", f.read),
                        (
                            "file_committed_bytes",
                            "Bytes of an open file delivered (its checkpoint).",
                            f.committed,
                        ),
                    ] {
                        e.gauge(metric, help, &fl, n as f64);
                    }
                }
            }
        }
        for series in &v.plugins {
            let ps = &series.stats;
            let l = [
                ("pipeline", name.as_str()),
                ("stage", series.stage.as_str()),
                ("plugin", series.plugin.as_str()),
            ];
            for (metric, help, v) in [
                (
                    "plugin_calls_total",
                    "Calls into the plugin.",
                    ps.calls.get() as f64,
                ),
                (
                    "plugin_call_seconds_total",
                    "Time spent in plugin calls.",
                    ps.call_micros.get() as f64 / 1e6,
                ),
                (
                    "plugin_traps_total",
                    "Calls that trapped (the instance was rebuilt).",
                    ps.traps.get() as f64,
                ),
                (
                    "plugin_errors_total",
                    "Calls that returned an error.",
                    ps.errors.get() as f64,
                ),
                (
                    "plugin_instances_total",
                    "Instances created.",
                    ps.instances.get() as f64,
                ),
                (
                    "plugin_events_in_total",
                    "Events handed to the plugin.",
                    ps.events_in.get() as f64,
                ),
                (
                    "plugin_events_out_total",
                    "Events the plugin returned (processors) or delivered (flushers).",
                    ps.events_out.get() as f64,
                ),
                (
                    "plugin_bytes_in_total",
                    "Bytes (bodies and field values) handed to the plugin.",
                    ps.bytes_in.get() as f64,
                ),
                (
                    "plugin_bytes_out_total",
                    "Bytes the plugin returned or delivered.",
                    ps.bytes_out.get() as f64,
                ),
                (
                    "plugin_output_bytes_total",
                    "Bytes the plugin wrote to its stdout/stderr (into the agent's log).",
                    ps.output_bytes.get() as f64,
                ),
                (
                    "plugin_output_lines_dropped_total",
                    "Lines of plugin output over the rate limit: counted, not logged.",
                    ps.output_lines_dropped.get() as f64,
                ),
                (
                    "plugin_destinations_denied_total",
                    "HTTP requests and TCP connections to destinations not in grants.hosts, denied before connecting.",
                    ps.denied.get() as f64,
                ),
            ] {
                e.counter(metric, help, &l, v);
            }
            for (metric, help, v) in [
                (
                    "plugin_memory_bytes",
                    "Linear memory of the plugin's live instances (one per worker), in bytes.",
                    ps.memory_bytes.get(),
                ),
                (
                    "plugin_instances",
                    "Instances of the plugin alive now (one per processor worker).",
                    ps.live_instances.get(),
                ),
            ] {
                e.gauge(metric, help, &l, v as f64);
            }
            e.histogram(
                "plugin_call_duration_seconds",
                "Latency of calls into the plugin.",
                &l,
                &ps.latency,
            );
            for (counter, n) in ps.counters_snapshot() {
                let mut cl = l.to_vec();
                cl.push(("counter", counter.as_str()));
                e.counter(
                    "plugin_counter_total",
                    "Counters the plugin reports through host.counter-add, by name.",
                    &cl,
                    n as f64,
                );
            }
        }
    }
}

/// The agent's own state: checkpoint writes and the API's connections.
pub fn agent(
    e: &mut Exposition,
    store: &crate::state::checkpoint::CheckpointStore,
    health: &super::Health,
) {
    e.counter(
        "checkpoint_write_errors_total",
        "Failed writes of the checkpoint file (the previous one stays in place).",
        &[],
        store.write_errors.get() as f64,
    );
    e.gauge(
        "checkpoint_writable",
        "1 while the last checkpoint write succeeded (else /readyz answers 503).",
        &[],
        if store.writable() { 1.0 } else { 0.0 },
    );
    e.counter(
        "api_connections_evicted_total",
        "API connections closed because newer ones came while the connection cap was reached.",
        &[],
        health.connections_evicted.get() as f64,
    );
    e.counter(
        "api_accept_errors_total",
        "API accepts that failed (e.g. out of file descriptors).",
        &[],
        health.accept_errors.get() as f64,
    );
    if let Some(rss) = resident_bytes() {
        e.gauge(
            "process_resident_memory_bytes",
            "Resident memory of the agent process (VmRSS), in bytes.",
            &[],
            rss as f64,
        );
    }
}

/// The process's resident set size, from `/proc/self/status`.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .ok()?;
    Some(kib * 1024)
}
