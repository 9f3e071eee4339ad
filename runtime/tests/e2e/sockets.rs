//! `wasi:sockets` for flushers: a raw TCP connection (the `test-socket`
//! fixture, Rust's `std::net` in the sandbox) reaches a granted
//! `host:port`, by address or by a name the host resolves, and nothing
//! else: an ungranted connect is denied before any connection is made,
//! logged, and the plugin sees `PermissionDenied`.

use std::io::Read;
use std::net::TcpListener;
use std::time::Duration;

use crate::common::*;

fn socket_pipeline(env: &Env, address: &str, granted: &str) -> std::path::PathBuf {
    let fixture = plugin_wasm("test-socket");
    env.config(&format!(
        r#"
  - name: sock
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    flushers:
      - plugin: {fixture}
        config: {{ address: "{address}" }}
        grants: {{ hosts: ["{granted}"] }}
        on_error: {{ backoff: 20ms }}
"#,
        log = env.path("in.log").display(),
        fixture = fixture.display(),
    ))
}

#[test]
fn a_flusher_reaches_a_granted_host_port_by_address_and_by_name() {
    for host in ["127.0.0.1", "localhost"] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let env = Env::new();
        let lines: String = (0..500).map(|i| format!("line {i}\n")).collect();
        env.write("in.log", &lines);
        let address = format!("{host}:{port}");
        let config = socket_pipeline(&env, &address, &address);
        let reader = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let mut got = String::new();
            while got.lines().count() < 500 {
                let mut buf = [0u8; 65536];
                let n = conn.read(&mut buf).unwrap();
                assert!(
                    n > 0,
                    "connection closed after {} lines",
                    got.lines().count()
                );
                got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
            }
            got
        });
        let out = run_once(&config);
        assert!(out.status.success());
        assert_eq!(reader.join().unwrap(), lines, "through {address}");
    }
}

#[test]
fn an_ungranted_connect_is_denied_before_connecting() {
    let granted = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    other.set_nonblocking(true).unwrap();
    let (granted, target) = (
        granted.local_addr().unwrap().to_string(),
        other.local_addr().unwrap().to_string(),
    );
    let env = Env::new();
    env.write("in.log", "one\ntwo\n");
    let config = socket_pipeline(&env, &target, &granted);
    let out = run_once(&config);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("Plugin tried to reach a destination it was not granted; denied.")
            && log.contains(&format!("destination={target}")),
        "{log}"
    );
    assert!(log.contains("denied=1"), "counted: {log}");
    // No connection was made.
    assert!(
        matches!(other.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no connection may reach {target}"
    );
    let dead = lines_in(&env.path("state/dead-letter/sock.ndjson"));
    assert_eq!(dead.len(), 2);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(reason.contains(&format!("connect {target}")), "{reason}");
}
