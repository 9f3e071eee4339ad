//! TLS over TCP for flushers whose protocol is not HTTP (Kafka's `SSL`
//! listeners): the host connects to a granted `host:port`, does the
//! handshake with the certificates of the flusher entry's `tls:` block and
//! hands the plugin a plaintext [`TlsStream`] (`std::io::Read + Write`).
//! HTTPS needs none of this: `wasi:http` does it (see [`crate::http`]).
//!
//! Natively (a plugin's own tests) there is no host: [`TlsStream::connect`]
//! answers `Unsupported`.

use std::io::{self, Read, Write};
use std::time::Duration;

/// A TLS connection made by the host.
pub struct TlsStream {
    #[cfg(target_arch = "wasm32")]
    conn: crate::bindings::tls::gleaner::tls::client::Connection,
    /// Bytes received but not yet read.
    pending: Vec<u8>,
    at: usize,
}

/// Most bytes asked of the host per receive.
#[cfg(target_arch = "wasm32")]
const CHUNK: u32 = 256 << 10;

fn other(message: String) -> io::Error {
    io::Error::other(message)
}

impl TlsStream {
    /// Connects to `host:port` (granted to the plugin) and completes the
    /// handshake; `timeout` bounds it and then each read and write. The
    /// error carries the host's reason: not granted, no connection, or
    /// why the handshake failed.
    pub fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<Self> {
        #[cfg(target_arch = "wasm32")]
        {
            let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
            let conn = crate::bindings::tls::gleaner::tls::client::connect(host, port, ms)
                .map_err(other)?;
            Ok(TlsStream {
                conn,
                pending: Vec::new(),
                at: 0,
            })
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = (host, port, timeout, other);
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TLS connections are made by the Gleaner host; none outside it",
            ))
        }
    }

    /// Connects to `addr` (`host:port`).
    pub fn connect_addr(addr: &str, timeout: Duration) -> io::Result<Self> {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| {
                Some((
                    h.trim_start_matches('[').trim_end_matches(']'),
                    p.parse().ok()?,
                ))
            })
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{addr} is not host:port"),
                )
            })?;
        TlsStream::connect(host, port, timeout)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.at == self.pending.len() {
            #[cfg(target_arch = "wasm32")]
            {
                // Ask for at least what the caller wants, so a large frame
                // is not fetched in small pieces.
                let want = u32::try_from(buf.len()).unwrap_or(u32::MAX).max(CHUNK);
                self.pending = self.conn.receive(want).map_err(other)?;
            }
            self.at = 0;
            if self.pending.is_empty() {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(target_arch = "wasm32")]
        self.conn.send(buf).map_err(other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_the_host_connect_says_it_needs_one() {
        let e = TlsStream::connect_addr("localhost:9093", Duration::from_secs(1))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        let e = TlsStream::connect_addr("no-port", Duration::from_secs(1))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
