//! What one plugin instance's `Store` holds and the sandbox it gets: a WASI
//! context with only the granted directories (and stdout if granted), a
//! memory cap, and `wasi:http` whose outgoing requests are checked against
//! the granted `host:port` list before any connection, then sent through a
//! pooled client shared by the plugin's instances.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::tls::{TlsError, TlsSpec, tls_cause};
use super::{PluginError, PluginSpec};
use crate::telemetry::Counter;

/// Names used in logs and metrics.
#[derive(Debug, Clone)]
pub struct Ident {
    /// Pipeline name.
    pub pipeline: Arc<str>,
    /// Plugin reference as configured (e.g. `builtin:parse-regex`).
    pub plugin: Arc<str>,
}

/// Counters of one configured plugin, across its instances.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Calls made.
    pub calls: Counter,
    /// Calls that trapped (panic, out of memory, deadline).
    pub traps: Counter,
    /// Calls that returned an error.
    pub errors: Counter,
    /// Instances created.
    pub instances: Counter,
    /// Instances alive now.
    pub live_instances: crate::telemetry::Gauge,
    /// Linear memory of its live instances, in bytes (it grows, and is
    /// given back only when an instance is dropped).
    pub memory_bytes: crate::telemetry::Gauge,
    /// Total call time in microseconds.
    pub call_micros: Counter,
    /// Call latency.
    pub latency: crate::telemetry::Histogram,
    /// Events handed to the plugin.
    pub events_in: Counter,
    /// Bytes (bodies and field values) handed to the plugin.
    pub bytes_in: Counter,
    /// Events it returned (processors) or delivered (flushers).
    pub events_out: Counter,
    /// Bytes it returned or delivered.
    pub bytes_out: Counter,
    /// Counters the plugin reported through `host.counter-add`.
    pub counters: Mutex<HashMap<String, u64>>,
    /// Bytes it wrote to its stdout/stderr (into the agent's log).
    pub output_bytes: Counter,
    /// Lines of that output logged.
    pub output_lines: Counter,
    /// Lines of that output over the rate limit (counted, not logged).
    pub output_lines_dropped: Counter,
    /// HTTP requests and TCP connections to destinations not in
    /// `grants.hosts`, denied before any connection was made.
    pub denied: Counter,
    /// The rate limit of those lines.
    pub output_budget: Mutex<super::stdio::LineBudget>,
}

impl PluginStats {
    /// The plugin's own counters, sorted by name.
    pub fn counters_snapshot(&self) -> std::collections::BTreeMap<String, u64> {
        let c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        c.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }
}

/// The pooled HTTP(S) client for a flusher's outgoing requests.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, wasmtime_wasi_http::WasiBody>;

/// How one configured flusher with granted hosts reaches them: the pooled
/// HTTP(S) client for `wasi:http`, and the TLS configuration of
/// `gleaner:tls` connections, both from the entry's `tls:` block.
#[derive(Clone)]
pub struct Egress {
    pub http: HttpClient,
    pub tls: Arc<rustls::ClientConfig>,
}

impl Egress {
    /// Loads `tls`'s files once for both.
    pub fn new(tls: &TlsSpec) -> Result<Self, TlsError> {
        let config = Arc::new(tls.client_config()?);
        Ok(Egress {
            http: http_client(config.clone()),
            tls: config,
        })
    }
}

/// Builds the pooled client (one per configured flusher), speaking TLS as
/// `tls` says to `https://` destinations.
fn http_client(tls: Arc<rustls::ClientConfig>) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    connector.set_nodelay(true);
    // The scheme decides, not the connector.
    connector.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(Arc::unwrap_or_clone(tls))
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https)
}

/// Checks outgoing requests against the grant and sends them pooled.
pub struct GrantHooks {
    hosts: Arc<[String]>,
    client: Option<HttpClient>,
    timeout: Duration,
    stats: Arc<PluginStats>,
}

/// `host:port` of a URI, with the scheme's default port.
fn authority_of(uri: &http::Uri) -> Option<String> {
    let auth = uri.authority()?;
    let port = auth
        .port_u16()
        .unwrap_or(if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        });
    Some(format!("{}:{port}", auth.host()))
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<wasmtime_wasi_http::WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for GrantHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        use wasmtime_wasi_http::Error;
        let target = authority_of(request.uri());
        let allowed = target
            .as_ref()
            .is_some_and(|t| self.hosts.iter().any(|h| h == t));
        let client = self.client.clone();
        let timeout = self.timeout;
        let stats = self.stats.clone();
        Box::new(async move {
            let Some(client) = client.filter(|_| allowed) else {
                stats.denied.inc();
                tracing::warn!(
                    destination = target.as_deref().unwrap_or("?"),
                    "Plugin tried to reach a destination it was not granted; denied."
                );
                return Err(Error::HttpRequestDenied);
            };
            let response = match tokio::time::timeout(timeout, client.request(request)).await {
                Err(_) => return Err(Error::HttpResponseTimeout),
                Ok(Err(e)) => {
                    if let Some(tls) = tls_cause(&e) {
                        tracing::warn!(
                            destination = target.as_deref().unwrap_or("?"),
                            error = %tls,
                            "TLS handshake with the destination failed."
                        );
                        return Err(match tls {
                            rustls::Error::InvalidCertificate(_) => Error::TlsCertificateError,
                            _ => Error::TlsProtocolError,
                        });
                    }
                    if e.is_connect() {
                        return Err(Error::ConnectionRefused);
                    }
                    return Err(Error::InternalError(Some(e.to_string())));
                }
                Ok(Ok(r)) => r,
            };
            let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
            let done: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// Everything one instance's store holds.
pub struct StoreState {
    pub(super) ident: Ident,
    pub(super) stats: Arc<PluginStats>,
    pub(super) limits: Limits,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: GrantHooks,
    /// `gleaner:tls` connections: what they may reach and how.
    pub(super) tls: super::tls_client::TlsGrant,
    pub(super) table: ResourceTable,
    /// Live `kernels.regex` resources (at most `kernels::MAX_REGEXES`).
    pub(super) regexes: usize,
    /// When the current call began (for its `call_timeout`).
    pub(super) call_started: std::time::Instant,
    /// The pipeline's stop signal: calls are interrupted past its deadline.
    pub(super) abort: Option<Arc<crate::model::shutdown::Shutdown>>,
}

/// The store's resource caps, counting the linear memory it grows into
/// its plugin's [`PluginStats::memory_bytes`].
pub struct Limits {
    caps: StoreLimits,
    /// Bytes of linear memory this store holds.
    memory: usize,
    stats: Arc<PluginStats>,
}

impl wasmtime::ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.caps.memory_growing(current, desired, maximum)?;
        if allowed {
            let grown = desired.saturating_sub(current);
            self.memory += grown;
            self.stats.memory_bytes.add(grown as i64);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.caps.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.caps.instances()
    }

    fn tables(&self) -> usize {
        self.caps.tables()
    }

    fn memories(&self) -> usize {
        self.caps.memories()
    }
}

impl Drop for Limits {
    fn drop(&mut self) {
        self.stats.memory_bytes.add(-(self.memory as i64));
        self.stats.live_instances.add(-1);
    }
}

impl StoreState {
    /// A sandbox with exactly what `grants` allows.
    pub fn new(
        ident: Ident,
        stats: Arc<PluginStats>,
        spec: &PluginSpec,
        egress: Option<Egress>,
    ) -> Result<Self, PluginError> {
        let (limits, grants) = (&spec.limits, &spec.grants);
        let mut wasi = WasiCtxBuilder::new();
        let config_dir = spec.config_dir.to_string_lossy();
        // A plugin's stderr, and its stdout unless granted, go through the
        // agent's log (tagged, escaped, rate-limited), never raw.
        wasi.stderr(super::stdio::LogStream::new(
            ident.clone(),
            stats.clone(),
            "stderr",
        ))
        .allow_blocking_current_thread(true)
        .env("GLEANER_CONFIG_DIR", &config_dir)
        .initial_cwd(&config_dir);
        if grants.stdout {
            wasi.stdout(super::stdio::GrantedStdout);
        } else {
            wasi.stdout(super::stdio::LogStream::new(
                ident.clone(),
                stats.clone(),
                "stdout",
            ));
        }
        super::sockets::grant(&mut wasi, &grants.hosts, &ident, &stats);
        for dir in &grants.dirs {
            std::fs::create_dir_all(dir).map_err(|e| {
                PluginError::Grant(format!(
                    "cannot create granted directory {}: {e}",
                    dir.display()
                ))
            })?;
            let guest = dir.to_string_lossy();
            wasi.preopened_dir(dir, guest.as_ref(), FsPerms::ReadWrite)
                .map_err(|e| {
                    PluginError::Grant(format!(
                        "cannot open granted directory {}: {e}",
                        dir.display()
                    ))
                })?;
        }
        // Counted out again when the store (and so `Limits`) is dropped.
        stats.live_instances.add(1);
        Ok(StoreState {
            ident,
            stats: stats.clone(),
            limits: Limits {
                caps: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_bytes)
                    .instances(64)
                    .tables(64)
                    .memories(16)
                    .trap_on_grow_failure(false)
                    .build(),
                memory: 0,
                stats: stats.clone(),
            },
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks: GrantHooks {
                hosts: grants.hosts.clone().into(),
                client: egress.as_ref().map(|e| e.http.clone()),
                timeout: limits.call_timeout,
                stats: stats.clone(),
            },
            tls: super::tls_client::TlsGrant::new(
                grants.hosts.clone().into(),
                egress.map(|e| e.tls),
                limits.call_timeout,
            ),
            table: ResourceTable::new(),
            regexes: 0,
            call_started: std::time::Instant::now(),
            abort: None,
        })
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_to_an_ungranted_destination_is_denied_without_connecting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let stats = Arc::new(PluginStats::default());
        let mut hooks = GrantHooks {
            hosts: vec!["127.0.0.1:1".to_owned()].into(),
            client: Some(Egress::new(&TlsSpec::default()).unwrap().http),
            timeout: Duration::from_secs(5),
            stats: stats.clone(),
        };
        let body = http_body_util::Empty::<bytes::Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = http::Request::post(format!("http://{addr}/x"))
            .body(body)
            .unwrap();
        let sent = hooks.send_request(request, None, Box::new(async { Ok(()) }));
        let result = rt.block_on(Box::into_pin(sent));
        assert!(matches!(
            result,
            Err(ref e) if e.to_string().contains("denied")
        ));
        let accepted = listener.accept();
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "no connection may be made"
        );
        assert_eq!(stats.denied.get(), 1);
    }

    #[test]
    fn authority_gets_the_default_port_of_its_scheme() {
        let u: http::Uri = "http://127.0.0.1/x".parse().unwrap();
        assert_eq!(authority_of(&u).as_deref(), Some("127.0.0.1:80"));
        let u: http::Uri = "https://example.org/x".parse().unwrap();
        assert_eq!(authority_of(&u).as_deref(), Some("example.org:443"));
        let u: http::Uri = "http://localhost:8080/x".parse().unwrap();
        assert_eq!(authority_of(&u).as_deref(), Some("localhost:8080"));
    }
}
