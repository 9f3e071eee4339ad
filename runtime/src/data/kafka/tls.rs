//! TLS to brokers for the native input: rustls over a blocking socket,
//! with the input's `tls:` configuration, as a `gleaner-kafka` connector.
//! Owns nothing but the connections it opens.

use std::sync::Arc;
use std::time::Duration;

use gleaner_kafka::wire::{Connector, Stream, Tcp};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// Opens TLS connections with one client configuration.
pub struct Rustls {
    config: Arc<ClientConfig>,
}

impl Rustls {
    /// Connections made with `config`.
    pub fn new(config: ClientConfig) -> Self {
        Rustls {
            config: Arc::new(config),
        }
    }
}

impl Connector for Rustls {
    fn connect(&self, addr: &str, timeout: Duration) -> std::io::Result<Box<dyn Stream>> {
        let host = addr
            .rsplit_once(':')
            .map_or(addr, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| std::io::Error::other(format!("{host} is not a server name: {e}")))?;
        let mut sock = Tcp::socket(addr, timeout)?;
        let mut conn =
            ClientConnection::new(self.config.clone(), name).map_err(std::io::Error::other)?;
        // The handshake now, so a refused certificate fails the connect
        // (and says why) rather than the first request.
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        Ok(Box::new(StreamOwned::new(conn, sock)))
    }
}
