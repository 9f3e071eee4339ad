//! The host side of `gleaner:tls/client`: TLS connections a flusher asks
//! for, made by the host to granted `host:port`s only (checked before the
//! connection is made, like `wasi:sockets` connects) with the entry's
//! `tls:` configuration, held in the store's resource table (at most
//! `MAX_CONNECTIONS` live) and read and written blocking, each with its
//! timeout. Owns these connections; must not touch batches or any other
//! part of the sandbox.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use wasmtime::component::Resource;

use super::bindings::tls::client as wit;
use super::store::StoreState;

/// Most TLS connections one plugin instance may hold at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Largest read one `receive` returns.
const MAX_READ: u32 = 1 << 20;

/// What `gleaner:tls` connections of one store may reach, and how.
pub struct TlsGrant {
    hosts: Arc<[String]>,
    /// `None` when nothing is granted (no connection can be made).
    config: Option<Arc<ClientConfig>>,
    /// The plugin's call timeout: no read or write waits longer.
    timeout: Duration,
    live: usize,
}

impl TlsGrant {
    /// Connections to `hosts` (`host:port`) with `config`, none waiting
    /// longer than `timeout`.
    pub fn new(hosts: Arc<[String]>, config: Option<Arc<ClientConfig>>, timeout: Duration) -> Self {
        TlsGrant {
            hosts,
            config,
            timeout,
            live: 0,
        }
    }

    /// The addresses of `host:port` the grant allows: all of them when it
    /// names `host:port` itself, else those a granted entry resolves to.
    fn allowed(&self, host: &str, port: u16) -> Vec<SocketAddr> {
        let target = format!("{host}:{port}");
        let Ok(found) = (host, port).to_socket_addrs() else {
            return Vec::new();
        };
        let found: Vec<SocketAddr> = found.collect();
        if self.hosts.contains(&target) {
            return found;
        }
        let granted: Vec<SocketAddr> = self
            .hosts
            .iter()
            .filter_map(|h| h.to_socket_addrs().ok())
            .flatten()
            .collect();
        found.into_iter().filter(|a| granted.contains(a)).collect()
    }
}

/// One open connection: TLS over a blocking socket with timeouts.
pub struct TlsConnection {
    stream: StreamOwned<ClientConnection, TcpStream>,
    target: String,
}

/// The rustls error inside an I/O error, if that is what it is.
fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref())
}

impl StoreState {
    fn tls_connect(
        &mut self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<TlsConnection, String> {
        let target = format!("{host}:{port}");
        let addrs = self.tls.allowed(host, port);
        let Some(config) = self.tls.config.clone().filter(|_| !addrs.is_empty()) else {
            self.stats.denied.inc();
            tracing::warn!(
                pipeline = &*self.ident.pipeline,
                plugin = &*self.ident.plugin,
                destination = %target,
                "Plugin tried to reach a destination it was not granted; denied."
            );
            return Err(format!("{target} is not granted to this plugin"));
        };
        if self.tls.live >= MAX_CONNECTIONS {
            return Err(format!(
                "too many TLS connections: a plugin may hold {MAX_CONNECTIONS} at once"
            ));
        }
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host} is not a valid server name: {e}"))?;
        let mut last = None;
        let tcp = addrs
            .iter()
            .find_map(|a| {
                TcpStream::connect_timeout(a, timeout)
                    .inspect_err(|e| last = Some(e.to_string()))
                    .ok()
            })
            .ok_or_else(|| {
                format!(
                    "cannot connect to {target}: {}",
                    last.unwrap_or_else(|| "no address".into())
                )
            })?;
        let _ = tcp.set_read_timeout(Some(timeout));
        let _ = tcp.set_write_timeout(Some(timeout));
        let _ = tcp.set_nodelay(true);
        let conn =
            ClientConnection::new(config, name).map_err(|e| format!("TLS with {target}: {e}"))?;
        let mut stream = StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            if let Err(e) = stream.conn.complete_io(&mut stream.sock) {
                let why = tls_error(&e).map_or_else(|| e.to_string(), |t| t.to_string());
                tracing::warn!(
                    pipeline = &*self.ident.pipeline,
                    plugin = &*self.ident.plugin,
                    destination = %target,
                    error = %why,
                    "TLS handshake with the destination failed."
                );
                return Err(format!("TLS handshake with {target} failed: {why}"));
            }
        }
        Ok(TlsConnection { stream, target })
    }
}

impl wit::Host for StoreState {
    fn connect(
        &mut self,
        host: String,
        port: u16,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Resource<TlsConnection>, String>> {
        let timeout = Duration::from_millis(u64::from(timeout_ms.max(1))).min(self.tls.timeout);
        match self.tls_connect(&host, port, timeout) {
            Ok(conn) => {
                let r = self.table.push(conn)?;
                self.tls.live += 1;
                Ok(Ok(r))
            }
            Err(e) => Ok(Err(e)),
        }
    }
}

impl wit::HostConnection for StoreState {
    fn send(
        &mut self,
        conn: Resource<TlsConnection>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let c = self.table.get_mut(&conn)?;
        Ok(c.stream
            .write_all(&data)
            .and_then(|()| c.stream.flush())
            .map_err(|e| format!("send to {} failed: {e}", c.target)))
    }

    fn receive(
        &mut self,
        conn: Resource<TlsConnection>,
        max: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let c = self.table.get_mut(&conn)?;
        let mut buf = vec![0u8; max.clamp(1, MAX_READ) as usize];
        Ok(match c.stream.read(&mut buf) {
            Ok(n) => {
                buf.truncate(n);
                Ok(buf)
            }
            Err(e) => Err(format!("receive from {} failed: {e}", c.target)),
        })
    }

    fn drop(&mut self, conn: Resource<TlsConnection>) -> wasmtime::Result<()> {
        let mut c = self.table.delete(conn)?;
        self.tls.live -= 1;
        c.stream.conn.send_close_notify();
        let _ = c.stream.flush();
        Ok(())
    }
}
