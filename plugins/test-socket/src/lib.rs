//! Test fixture: a flusher that opens a plain TCP connection (through
//! `wasi:sockets`, with Rust's `std::net`) to `address` (`host:port`, a
//! name resolved through the host) and writes each event's body and `\n`.
//! A connection the host refuses is a rejected batch, with the error, so a
//! test sees it in the dead letters; other failures are retried.

use std::io::Write;
use std::net::TcpStream;

use gleaner_sdk::{Batch, FlushError, Flusher};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    address: String,
}

struct Socket {
    address: String,
    stream: Option<TcpStream>,
}

impl Flusher for Socket {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        Ok(Socket {
            address: c.address,
            stream: None,
        })
    }

    fn flush(&mut self, input: Batch) -> Result<(), FlushError> {
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let s = TcpStream::connect(&self.address).map_err(|e| match e.kind() {
                    std::io::ErrorKind::PermissionDenied => {
                        FlushError::Rejected(format!("connect {}: {e}", self.address))
                    }
                    _ => FlushError::Retryable(format!("connect {}: {e}", self.address)),
                })?;
                self.stream.insert(s)
            }
        };
        let mut out = Vec::with_capacity(input.body_bytes() + input.len());
        for event in input.events() {
            out.extend_from_slice(event.body());
            out.push(b'\n');
        }
        if let Err(e) = stream.write_all(&out) {
            self.stream = None;
            return Err(FlushError::Retryable(format!("write: {e}")));
        }
        Ok(())
    }
}

gleaner_sdk::export_flusher!(Socket);
