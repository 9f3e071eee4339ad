//! Resolving plugin entries: builtin, file or bundle references, limits,
//! failure policy and spill, and grants (no `/` or data directory; every
//! URL in a flusher's config reaching a granted `host:port`; what a bundle
//! needs given by the pipeline).

use std::path::Path;

use super::{ConfigError, GiveUp, OnError, PluginEntry, Resolver, Spill, raw};
use crate::plugin::{Grants, Limits, PluginKind, PluginSource, PluginSpec, TlsSpec};

impl Resolver<'_> {
    /// A `tls:` block with its paths made absolute, checked by loading it.
    pub(super) fn tls_spec(&self, key: &str, t: &raw::RawTls) -> Result<TlsSpec, ConfigError> {
        let tls = TlsSpec {
            ca_file: t.ca_file.as_deref().map(|p| self.absolute(p)),
            cert_file: t.cert_file.as_deref().map(|p| self.absolute(p)),
            key_file: t.key_file.as_deref().map(|p| self.absolute(p)),
            verify: t.verify,
        };
        match tls.client_config() {
            Ok(_) => Ok(tls),
            Err(err) => self.err(format!("{key}.tls.{}", err.key), err.message),
        }
    }

    pub(super) fn plugin(
        &self,
        key: &str,
        kind: PluginKind,
        e: raw::RawPlugin,
    ) -> Result<PluginEntry, ConfigError> {
        let mut bundle = None;
        let source = match e.plugin.strip_prefix("builtin:") {
            Some(name) => {
                if crate::plugin::builtin::get(name).is_none() {
                    let names: Vec<_> = crate::plugin::builtin::names().collect();
                    return self.err(
                        format!("{key}.plugin"),
                        format!(
                            "there is no builtin plugin `{name}` (builtins: {})",
                            names.join(", ")
                        ),
                    );
                }
                PluginSource::Builtin(name.to_owned())
            }
            None if !e.plugin.contains('/') && !e.plugin.ends_with(".wasm") => {
                let Some(reg) = self.bundles else {
                    return self.err(
                        format!("{key}.plugin"),
                        format!(
                            "`{}` is not builtin:NAME or a .wasm path, and no plugins_dir is set to look for a bundle of that name",
                            e.plugin
                        ),
                    );
                };
                let b = match reg.resolve(&e.plugin) {
                    Ok(b) => b,
                    Err(err) => return self.err(format!("{key}.plugin"), err.to_string()),
                };
                if b.kind != kind {
                    return self.err(
                        format!("{key}.plugin"),
                        format!("bundle {} is a {}, not a {kind}", b.id(), b.kind),
                    );
                }
                bundle = Some(b);
                PluginSource::Bundle {
                    id: b.id(),
                    path: b.component.clone(),
                    sha256: b.sha256.clone(),
                }
            }
            None => {
                let path = self.absolute(Path::new(&e.plugin));
                if !path.is_file() {
                    return self.err(
                        format!("{key}.plugin"),
                        format!(
                            "`{}` is neither builtin:NAME nor an existing .wasm file ({})",
                            e.plugin,
                            path.display()
                        ),
                    );
                }
                PluginSource::File(path)
            }
        };
        let config_json = match (bundle, &e.config) {
            (Some(b), c) => b.merged_config(c.as_ref()).to_string(),
            (None, None) => "{}".to_owned(),
            (None, Some(v)) if v.is_null() => "{}".to_owned(),
            (None, Some(v)) => v.to_string(),
        };
        if let Some(b) = bundle {
            self.bundle_grants(key, b, &e.grants)?;
        }
        if e.limits.memory_mib == 0 {
            return self.err(format!("{key}.limits.memory_mib"), "must be at least 1");
        }
        if e.limits.call_timeout.is_zero() {
            return self.err(format!("{key}.limits.call_timeout"), "must be above zero");
        }
        let mut dirs = Vec::new();
        for (i, d) in e.grants.dirs.iter().enumerate() {
            let abs = self.absolute(d);
            if abs.parent().is_none() {
                return self.err(
                    format!("{key}.grants.dirs[{i}]"),
                    "granting `/` gives the plugin the whole host; grant the directory it writes to",
                );
            }
            if abs.exists() && !abs.is_dir() {
                return self.err(
                    format!("{key}.grants.dirs[{i}]"),
                    format!("{} is not a directory", abs.display()),
                );
            }
            dirs.push(abs);
        }
        for (i, h) in e.grants.hosts.iter().enumerate() {
            let ok = h
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return self.err(
                    format!("{key}.grants.hosts[{i}]"),
                    format!("`{h}` is not host:port"),
                );
            }
        }
        if kind == PluginKind::Flusher
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(&config_json)
            && let Some((at, url, authority)) = ungranted_url(&value, &e.grants.hosts)
        {
            return self.err(
                format!("{key}.config{at}"),
                format!(
                    "`{url}` reaches {authority}, which is not in grants.hosts (add `{authority}` to grants.hosts)"
                ),
            );
        }
        if kind == PluginKind::Processor
            && (!e.grants.hosts.is_empty() || !e.grants.dirs.is_empty() || e.grants.stdout)
        {
            return self.err(
                format!("{key}.grants"),
                "processors get no grants: only flushers reach files or the network",
            );
        }
        if kind == PluginKind::Processor && e.spill.is_some() {
            return self.err(
                format!("{key}.spill"),
                "only flushers spill to the disk buffer",
            );
        }
        if kind == PluginKind::Processor && e.tls.is_some() {
            return self.err(
                format!("{key}.tls"),
                "only flushers make requests that need TLS",
            );
        }
        let tls = match &e.tls {
            None => TlsSpec::default(),
            Some(t) => self.tls_spec(key, t)?,
        };
        if e.spill.as_ref().is_some_and(|s| s.max_mib == 0) {
            return self.err(format!("{key}.spill.max_mib"), "must be at least 1");
        }
        if kind == PluginKind::Flusher && e.on_error.then == GiveUp::Skip {
            return self.err(
                format!("{key}.on_error.then"),
                "`skip` is for processors; use dead_letter or drop",
            );
        }
        Ok(PluginEntry {
            key: key.to_owned(),
            reference: match bundle {
                Some(b) => b.id(),
                None => e.plugin.clone(),
            },
            kind,
            spec: PluginSpec {
                source,
                config_json,
                config_dir: self.base.to_path_buf(),
                limits: Limits {
                    memory_bytes: (e.limits.memory_mib as usize).saturating_mul(1 << 20),
                    call_timeout: e.limits.call_timeout,
                    epoch_deadline: e.limits.epoch_deadline,
                },
                grants: Grants {
                    dirs,
                    hosts: e.grants.hosts.clone(),
                    stdout: e.grants.stdout,
                },
                tls,
            },
            on_error: OnError {
                retries: e.on_error.retries,
                backoff: e.on_error.backoff,
                max_backoff: e.on_error.max_backoff.max(e.on_error.backoff),
                then: e.on_error.then,
            },
            spill: e.spill.as_ref().map(|s| Spill {
                max_bytes: s.max_mib.saturating_mul(1 << 20),
                drop_oldest: s.when_full == raw::WhenFull::DropOldest,
            }),
        })
    }
    /// Every grant bundle `b` needs must be given by the pipeline.
    fn bundle_grants(
        &self,
        key: &str,
        b: &crate::plugin::bundle::Bundle,
        given: &raw::RawGrants,
    ) -> Result<(), ConfigError> {
        let missing: Vec<String> = b
            .needs
            .hosts
            .iter()
            .filter(|h| !given.hosts.contains(h))
            .map(|h| format!("hosts: {h}"))
            .chain(
                b.needs
                    .dirs
                    .iter()
                    .filter(|d| {
                        let want = self.absolute(d);
                        !given.dirs.iter().any(|g| self.absolute(g) == want)
                    })
                    .map(|d| format!("dirs: {}", d.display())),
            )
            .chain((b.needs.stdout && !given.stdout).then(|| "stdout: true".to_owned()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.err(
            format!("{key}.grants"),
            format!(
                "bundle {} needs grants the pipeline does not give: {}",
                b.id(),
                missing.join(", ")
            ),
        )
    }
}

/// The first `http://` or `https://` URL in a flusher's config whose
/// `host:port` is not granted: (key path below `config`, URL, host:port).
/// `validate` refuses what every request would then be denied.
fn ungranted_url(value: &serde_json::Value, hosts: &[String]) -> Option<(String, String, String)> {
    match value {
        serde_json::Value::String(s) => {
            let uri: http::Uri = s.parse().ok()?;
            let scheme = uri.scheme_str()?;
            if scheme != "http" && scheme != "https" {
                return None;
            }
            let auth = uri.authority()?;
            let port = auth
                .port_u16()
                .unwrap_or(if scheme == "https" { 443 } else { 80 });
            let authority = format!("{}:{port}", auth.host());
            (!hosts.contains(&authority)).then(|| (String::new(), s.clone(), authority))
        }
        serde_json::Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            ungranted_url(v, hosts).map(|(at, u, a)| (format!("[{i}]{at}"), u, a))
        }),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            ungranted_url(v, hosts).map(|(at, u, a)| (format!(".{k}{at}"), u, a))
        }),
        _ => None,
    }
}
