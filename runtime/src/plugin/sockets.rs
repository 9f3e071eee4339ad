//! `wasi:sockets` for flushers, granted: TCP connections only to the
//! `host:port`s of `grants.hosts`, checked before the connection is made
//! (names resolved by the host when the plugin connects, so a destination
//! that moves is followed), the implicit bind a connect makes, and name
//! lookup. No listening, no accepting, no UDP. A denied connect is logged
//! and counted like a denied HTTP request. Owns this check and nothing
//! else of the sandbox.

use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::sockets::SocketAddrUse;

use super::store::{Ident, PluginStats};

/// Whether `addr` is one of `hosts` (`host:port`, names resolved now).
async fn granted(hosts: &[String], addr: SocketAddr) -> bool {
    for host in hosts {
        if let Ok(found) = tokio::net::lookup_host(host.as_str()).await
            && found.into_iter().any(|a| a == addr)
        {
            return true;
        }
    }
    false
}

/// Gives the sandbox TCP to `hosts` only (nothing when empty).
pub fn grant(wasi: &mut WasiCtxBuilder, hosts: &[String], ident: &Ident, stats: &Arc<PluginStats>) {
    wasi.allow_udp(false);
    if hosts.is_empty() {
        wasi.allow_tcp(false).allow_ip_name_lookup(false);
        return;
    }
    wasi.allow_tcp(true).allow_ip_name_lookup(true);
    let hosts: Arc<[String]> = hosts.to_vec().into();
    let (ident, stats) = (ident.clone(), stats.clone());
    wasi.socket_addr_check(move |addr, use_| {
        let (hosts, ident, stats) = (hosts.clone(), ident.clone(), stats.clone());
        Box::pin(async move {
            let allowed = match use_ {
                // The ephemeral local port a connect binds to.
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                SocketAddrUse::TcpConnect => granted(&hosts, addr).await,
                _ => false,
            };
            if !allowed {
                stats.denied.inc();
                tracing::warn!(
                    pipeline = &*ident.pipeline,
                    plugin = &*ident.plugin,
                    destination = %addr,
                    socket_use = ?use_,
                    "Plugin tried to reach a destination it was not granted; denied."
                );
            }
            allowed
        })
    });
}
