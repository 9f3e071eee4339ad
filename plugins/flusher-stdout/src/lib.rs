//! `stdout`: writes each event as one JSON line to Gleaner's stdout (needs
//! `grants: { stdout: true }`). See `gleaner_sdk::json` for the document.
//!
//! Config: none (`{}`).

use std::io::Write;

use gleaner_sdk::{Batch, FlushError, Flusher};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

/// The flusher.
pub struct Stdout {
    buf: Vec<u8>,
}

impl Flusher for Stdout {
    fn init(config: &str) -> Result<Self, String> {
        let _: Config = gleaner_sdk::parse_config(config)?;
        Ok(Stdout { buf: Vec::new() })
    }

    fn flush(&mut self, input: Batch) -> Result<(), FlushError> {
        self.buf.clear();
        gleaner_sdk::json::write_ndjson(&input, &mut self.buf);
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)
            .and_then(|()| out.flush())
            .map_err(|e| {
                FlushError::Retryable(format!("cannot write to stdout (was it granted?): {e}"))
            })
    }
}

gleaner_sdk::export_flusher!(Stdout);
