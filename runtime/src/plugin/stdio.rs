//! What a plugin writes to its stdout and stderr. Never the agent's own
//! streams: each line goes through the agent's log, tagged with pipeline
//! and plugin, escaped (a plugin cannot forge log lines or send terminal
//! codes), rate-limited per plugin and counted. Only a flusher granted
//! `stdout` writes to the real stdout ([`GrantedStdout`]), and a closed
//! stdout (`gleaner run | head`) is noticed so its pipeline can end.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use super::store::{Ident, PluginStats};

/// Longest line logged; the rest of a longer one is counted, not shown.
const MAX_LINE: usize = 1024;
/// Lines a plugin may log per second, and in a burst.
const LINES_PER_SEC: f64 = 20.0;
const BURST: f64 = 50.0;

/// Set once a write to the real stdout failed with a broken pipe.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// True once Gleaner's stdout was found closed (the reader went away).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// A token bucket over the lines one plugin logs (shared by its instances).
#[derive(Debug)]
pub struct LineBudget {
    tokens: f64,
    at: Instant,
    /// Lines dropped since the last "dropped" notice.
    dropped: u64,
    noticed: Instant,
}

impl Default for LineBudget {
    fn default() -> Self {
        LineBudget {
            tokens: BURST,
            at: Instant::now(),
            dropped: 0,
            noticed: Instant::now(),
        }
    }
}

impl LineBudget {
    /// Takes one line's token; false if the plugin is over its rate.
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * LINES_PER_SEC;
        self.tokens = (self.tokens + refill).min(BURST);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A plugin's stdout or stderr, into the agent's log.
#[derive(Clone)]
pub struct LogStream {
    ident: Ident,
    stats: Arc<PluginStats>,
    stream: &'static str,
}

impl LogStream {
    /// The plugin's `stream` ("stdout" or "stderr").
    pub fn new(ident: Ident, stats: Arc<PluginStats>, stream: &'static str) -> Self {
        LogStream {
            ident,
            stats,
            stream,
        }
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            to: self.clone(),
            line: Vec::new(),
        }
    }

    fn emit(&self, line: &[u8]) {
        let now = Instant::now();
        let mut budget = self
            .stats
            .output_budget
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !budget.take(now) {
            budget.dropped += 1;
            self.stats.output_lines_dropped.inc();
            if now.duration_since(budget.noticed) >= Duration::from_secs(10) {
                let dropped = std::mem::take(&mut budget.dropped);
                budget.noticed = now;
                drop(budget);
                tracing::warn!(pipeline = %self.ident.pipeline, plugin = %self.ident.plugin, dropped, "Plugin writes too much output; lines over the limit were counted, not logged.");
            }
            return;
        }
        drop(budget);
        let shown = &line[..line.len().min(MAX_LINE)];
        // Quoted and escaped (`?`): control characters and newlines cannot
        // make it look like a line of the agent's own.
        let text = String::from_utf8_lossy(shown);
        let cut = line.len() - shown.len();
        self.stats.output_lines.inc();
        tracing::warn!(
            pipeline = %self.ident.pipeline,
            plugin = %self.ident.plugin,
            stream = self.stream,
            bytes_cut = cut,
            line = ?text,
            "Plugin output."
        );
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// Splits what one stream handle writes into lines.
struct LineWriter {
    to: LogStream,
    line: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, mut bytes: &[u8]) {
        self.to.stats.output_bytes.add(bytes.len() as u64);
        while let Some(i) = memchr::memchr(b'\n', bytes) {
            self.line.extend_from_slice(&bytes[..i]);
            self.to.emit(&self.line);
            self.line.clear();
            bytes = &bytes[i + 1..];
        }
        self.line.extend_from_slice(bytes);
        if self.line.len() > 4 * MAX_LINE {
            self.to.emit(&self.line);
            self.line.clear();
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.to.emit(&self.line);
        }
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Gleaner's real stdout, for a flusher granted it: notes a broken pipe.
#[derive(Clone, Copy)]
pub struct GrantedStdout;

impl GrantedStdout {
    fn result<T>(r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r
            && e.kind() == std::io::ErrorKind::BrokenPipe
            && !STDOUT_CLOSED.swap(true, Ordering::Relaxed)
        {
            tracing::warn!("Stdout was closed by its reader; pipelines that write to it end.");
        }
        r
    }
}

impl IsTerminal for GrantedStdout {
    fn is_terminal(&self) -> bool {
        std::io::IsTerminal::is_terminal(&std::io::stdout())
    }
}

impl StdoutStream for GrantedStdout {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(*self)
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(*self)
    }
}

impl OutputStream for GrantedStdout {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        Self::result(std::io::stdout().write_all(&bytes))
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::Error::from(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Self::result(std::io::stdout().flush())
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::Error::from(e)))
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GrantedStdout {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GrantedStdout {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Self::result(std::io::stdout().write(buf)))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Self::result(std::io::stdout().flush()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_allows_a_burst_then_its_rate() {
        let mut b = LineBudget::default();
        let t0 = Instant::now();
        let burst = (0..200).filter(|_| b.take(t0)).count();
        assert_eq!(burst, BURST as usize);
        let later = t0 + Duration::from_secs(1);
        let more = (0..200).filter(|_| b.take(later)).count();
        assert_eq!(more, LINES_PER_SEC as usize);
    }
}
