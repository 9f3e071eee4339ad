//! `gleaner tap`: prints a sample of the events passing one stage of a
//! running agent's pipeline, as JSON lines, as they pass (through the
//! API's `/api/v1/tap`). Ends after `limit` events, or when the pipeline
//! stops; Ctrl-C ends it sooner. Delivery is not affected either way.
//!
//! Reads the agent's local API only.

use std::io::{BufRead, Read, Write};
use std::net::SocketAddr;

use crate::tooling::api_client::{ApiClient, ClientError, encode};

/// What to tap.
#[derive(Debug, Clone)]
pub struct TapOptions {
    /// The pipeline.
    pub pipeline: String,
    /// `input`, `processor:N` or `flusher:N` (or a plugin reference for N).
    pub stage: String,
    /// Events, then the tap ends.
    pub limit: u64,
    /// Events a second at most.
    pub rate: u32,
}

/// Runs `gleaner tap` against the agent at `addr`; the number of events
/// printed.
pub fn run(addr: SocketAddr, o: &TapOptions) -> Result<u64, ClientError> {
    let api = ApiClient::new(addr);
    let path = format!(
        "/api/v1/tap?pipeline={}&stage={}&limit={}&rate={}",
        encode(&o.pipeline),
        encode(&o.stage),
        o.limit,
        o.rate
    );
    let mut answer = api.open("GET", &path, None)?;
    if answer.status != 200 {
        let mut text = String::new();
        let _ = answer.body.read_to_string(&mut text);
        return answer.check(&api, &path, text).map(|_| 0);
    }
    let what = answer
        .head
        .lines()
        .find_map(|l| l.strip_prefix("x-gleaner-tap: "))
        .unwrap_or_default()
        .trim()
        .to_owned();
    eprintln!("Tapping {what}.");
    let mut stdout = std::io::stdout().lock();
    let mut line = String::new();
    let mut n = 0;
    loop {
        line.clear();
        match answer.body.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        // A reader that went away (`| head`) ends the tap.
        if stdout.write_all(line.as_bytes()).is_err() || stdout.flush().is_err() {
            break;
        }
        n += 1;
    }
    eprintln!("{n} events.");
    Ok(n)
}
