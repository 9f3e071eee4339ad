//! {{name}}: a Gleaner flusher. It counts the events it is given in the
//! plugin counter `events` and logs each batch at debug level; replace
//! `flush` with delivery to your destination (grant it in the pipeline:
//! `grants: { hosts: ["host:port"] }` for wasi:http, or `dirs`).
//!
//! Build: `gleaner plugin build`. Test natively: `cargo test`. Test in the
//! real runtime: `gleaner plugin test plugin.wasm --input sample.log`.

use gleaner_sdk::{Batch, FlushError, Flusher};

/// The flusher.
pub struct Plugin;

impl Flusher for Plugin {
    fn init(config: &str) -> Result<Self, String> {
        let _: serde::de::IgnoredAny = gleaner_sdk::parse_config(config)?;
        Ok(Plugin)
    }

    fn flush(&mut self, input: Batch) -> Result<(), FlushError> {
        gleaner_sdk::host::counter_add("events", input.len() as u64);
        gleaner_sdk::host::log(gleaner_sdk::host::Level::Debug, &format!("{} events", input.len()));
        Ok(())
    }
}

gleaner_sdk::export_flusher!(Plugin);

#[cfg(test)]
mod tests {
    use gleaner_sdk::testing::{batch_of_lines, counters};

    use super::*;

    #[test]
    fn counts_events() {
        let mut f = Plugin::init("{}").unwrap();
        f.flush(batch_of_lines(&["a", "b"])).unwrap();
        assert_eq!(counters()["events"], 2);
    }
}
