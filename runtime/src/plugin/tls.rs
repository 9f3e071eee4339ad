//! TLS for flushers' outgoing HTTP: the rustls client configuration of one
//! configured flusher — the system's roots (or Mozilla's, bundled, where
//! the system has none) plus an optional CA file, an optional client
//! certificate for mTLS, and `verify: false` for test setups. Loads files
//! and builds configs; never opens a connection.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// What a flusher entry's `tls:` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSpec {
    /// PEM file of CA certificates trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (mTLS); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Verify the server's certificate and name (default true).
    pub verify: bool,
}

impl Default for TlsSpec {
    fn default() -> Self {
        TlsSpec {
            ca_file: None,
            cert_file: None,
            key_file: None,
            verify: true,
        }
    }
}

/// A `tls:` setting that cannot be used: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TlsError {
    /// `ca_file`, `cert_file` or `key_file`.
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's root certificates, loaded once per process; Mozilla's
/// (`webpki-roots`) where the system has none (a bare container image).
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::info!(
                "No system CA certificates found; trusting the Mozilla roots built into gleaner."
            );
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        roots
    })
}

fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError { key, message };
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("{} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(err(format!("{} holds no certificate", path.display())));
    }
    Ok(certs)
}

impl TlsSpec {
    /// Builds the client configuration, reading every file named (so a
    /// config check finds a missing or bad file before anything starts).
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError {
                key: "tls",
                message: e.to_string(),
            })?;
        let builder = if self.verify {
            let mut roots = system_roots().clone();
            if let Some(ca) = &self.ca_file {
                for cert in certs("ca_file", ca)? {
                    roots.add(cert).map_err(|e| TlsError {
                        key: "ca_file",
                        message: format!("{}: {e}", ca.display()),
                    })?;
                }
            }
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
        };
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let chain = certs("cert_file", cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError {
                    key: "key_file",
                    message: format!("{}: no private key read: {e}", key.display()),
                })?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| TlsError {
                        key: "key_file",
                        message: format!("{} does not go with cert_file: {e}", key.display()),
                    })
            }
            (Some(_), None) => Err(TlsError {
                key: "key_file",
                message: "cert_file needs its key_file".into(),
            }),
            (None, Some(_)) => Err(TlsError {
                key: "cert_file",
                message: "key_file needs its cert_file".into(),
            }),
        }
    }
}

/// `verify: false`: any certificate, any name (signatures are still checked
/// so the handshake itself is sound).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS error somewhere in a client error's chain, if the failure was
/// TLS's (an untrusted certificate, a failed handshake).
pub fn tls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // `io::Error` hides a custom inner error from `source()` (and
        // hyper-rustls wraps tokio-rustls's io::Error in another).
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_error_is_found_under_nested_io_errors() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let outer = std::io::Error::other(inner);
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(outer);
        let found = tls_cause(boxed.as_ref());
        assert!(matches!(found, Some(rustls::Error::InvalidCertificate(_))));
        let plain = std::io::Error::other("refused");
        assert!(tls_cause(&plain).is_none());
    }

    #[test]
    fn files_are_checked_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsSpec {
            ca_file: Some(dir.path().join("nope.pem")),
            ..TlsSpec::default()
        };
        let e = missing.client_config().unwrap_err();
        assert_eq!(e.key, "ca_file");
        assert!(e.message.starts_with("cannot read "), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello\n").unwrap();
        let e = TlsSpec {
            ca_file: Some(junk.clone()),
            ..TlsSpec::default()
        }
        .client_config()
        .unwrap_err();
        assert_eq!(
            (e.key, e.message.ends_with("holds no certificate")),
            ("ca_file", true)
        );
        let e = TlsSpec {
            cert_file: Some(junk),
            ..TlsSpec::default()
        }
        .client_config()
        .unwrap_err();
        assert_eq!(e.key, "key_file");
        assert!(TlsSpec::default().client_config().is_ok());
        let off = TlsSpec {
            verify: false,
            ..TlsSpec::default()
        };
        assert!(off.client_config().is_ok());
    }
}
