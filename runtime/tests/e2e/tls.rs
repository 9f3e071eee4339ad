//! The http flusher over https: a CA file, a client certificate (mTLS) and
//! an untrusted certificate refused, against a rustls server with
//! certificates this test makes (rcgen).

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::common::*;
use crate::http_sink::Sink;

/// A CA: its certificate (PEM) and what signs with it.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate for 127.0.0.1 signed by `ca`: (cert PEM, key PEM).
pub fn leaf(ca: &Ca) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A rustls server config with `cert`/`key`, requiring a client
/// certificate signed by `clients` if given.
fn server(cert: &str, key: &str, clients: Option<&Ca>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    Arc::new(builder.with_single_cert(chain, key).unwrap())
}

/// Writes `lines` lines into `in.log`.
fn lines(env: &Env, lines: usize) {
    let text: String = (0..lines).map(|i| format!("secure {i}\n")).collect();
    env.write("in.log", &text);
}

/// A pipeline shipping `in.log` to `sink` over https with this `tls:` block.
fn ship(env: &Env, sink: &Sink, tls: &str) -> std::path::PathBuf {
    env.config(&format!(
        r#"
  - name: tls
    batch: {{ max_events: 100, linger: 20ms }}
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    flushers:
      - plugin: builtin:http
        config: {{ url: "https://{addr}/ingest" }}
        grants: {{ hosts: ["{addr}"] }}
        tls: {tls}
        on_error: {{ backoff: 50ms, max_backoff: 200ms }}
"#,
        log = env.path("in.log").display(),
        addr = sink.addr
    ))
}

#[test]
fn https_with_a_ca_file_and_with_a_client_certificate() {
    let env = Env::new();
    let server_ca = ca("gleaner test server CA");
    let (cert, key) = leaf(&server_ca);
    let ca_file = env.write("ca.pem", &server_ca.pem);

    // Server authentication only: the CA file makes the server trusted.
    let sink = Sink::start_tls(server(&cert, &key, None));
    lines(&env, 250);
    let config = ship(
        &env,
        &sink,
        &format!(r#"{{ ca_file: "{}" }}"#, ca_file.display()),
    );
    let out = run_once(&config);
    let events = sink.events();
    assert_eq!(
        events.len(),
        250,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["message"], format!("secure {i}"));
    }

    // mTLS: the server requires a certificate from its client CA.
    let client_ca = ca("gleaner test client CA");
    let (client_cert, client_key) = leaf(&client_ca);
    let env = Env::new();
    let ca_file = env.write("ca.pem", &server_ca.pem);
    let cert_file = env.write("client.pem", &client_cert);
    let key_file = env.write("client-key.pem", &client_key);
    let sink = Sink::start_tls(server(&cert, &key, Some(&client_ca)));
    lines(&env, 120);
    let config = ship(
        &env,
        &sink,
        &format!(
            r#"{{ ca_file: "{}", cert_file: "{}", key_file: "{}" }}"#,
            ca_file.display(),
            cert_file.display(),
            key_file.display()
        ),
    );
    let out = run_once(&config);
    assert_eq!(
        sink.events().len(),
        120,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(sink.state.lock().unwrap().handshake_errors.is_empty());
}

#[test]
fn an_untrusted_certificate_is_refused_and_retried_until_it_is_trusted() {
    let env = Env::new();
    let server_ca = ca("not in any trust store");
    let (cert, key) = leaf(&server_ca);
    let sink = Sink::start_tls(server(&cert, &key, None));
    // No CA file: the system's roots do not know this CA.
    lines(&env, 10);
    let config = ship(&env, &sink, "{ verify: true }");
    let agent = start(&env, &config);
    let failed = "TLS handshake with the destination failed.";
    let waited = std::time::Instant::now();
    while env.log().matches(failed).count() < 2 {
        assert!(
            waited.elapsed().as_secs() < 60,
            "no TLS failure logged:\n{}",
            env.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = env.log();
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(log.contains("certificate is not trusted"), "{log}");
    assert!(sink.state.lock().unwrap().requests.is_empty());
    stop(agent);
    // Nothing was lost: trusted (with the CA file), the same lines arrive.
    let ca_file = env.write("ca.pem", &server_ca.pem);
    let config = ship(
        &env,
        &sink,
        &format!(r#"{{ ca_file: "{}" }}"#, ca_file.display()),
    );
    run_once(&config);
    let got: Vec<String> = sink
        .events()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..10).map(|i| format!("secure {i}")).collect();
    assert_eq!(got, want);
}

#[test]
fn tls_files_are_checked_with_the_config() {
    let env = Env::new();
    let sink = Sink::start(&[]);
    let junk = env.write("junk.pem", "not a certificate\n");
    lines(&env, 1);
    let config = ship(
        &env,
        &sink,
        &format!(r#"{{ ca_file: "{}" }}"#, junk.display()),
    );
    let err = run_refused(&config);
    assert!(
        err.contains("pipelines[0].flushers[0].tls.ca_file: ")
            && err.contains("holds no certificate"),
        "{err}"
    );
    let server_ca = ca("x");
    let (cert, _) = leaf(&server_ca);
    let cert_file = env.write("client.pem", &cert);
    let config = ship(
        &env,
        &sink,
        &format!(r#"{{ cert_file: "{}" }}"#, cert_file.display()),
    );
    let err = run_refused(&config);
    assert!(
        err.contains("tls.key_file: cert_file needs its key_file"),
        "{err}"
    );
}
