//! The benchmark's input: deterministic access-log records (a fixed-seed
//! generator), written as nginx combined lines or as the same records as
//! JSON lines. Owns no measurement.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// How each record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// nginx combined format.
    Nginx,
    /// One JSON object per line, the nginx fields as members.
    Json,
}

const PATHS: [&str; 6] = [
    "/",
    "/index.html",
    "/api/v1/users/42",
    "/static/app.min.js",
    "/login?next=%2Fcart",
    "/healthz",
];
const AGENTS: [&str; 3] = [
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "curl/8.5.0",
    "kube-probe/1.30",
];
const METHODS: [&str; 4] = ["GET", "GET", "POST", "PUT"];
const STATUS: [u16; 6] = [200, 200, 200, 304, 404, 502];

/// An endless, deterministic source of records.
pub struct Records {
    x: u64,
    shape: Shape,
}

impl Records {
    /// Records written as `shape`, always the same sequence.
    pub fn new(shape: Shape) -> Self {
        Records {
            x: 0x9E37_79B9_7F4A_7C15,
            shape,
        }
    }

    /// Appends the next record, with its newline, to `line`.
    pub fn next_into(&mut self, line: &mut String) {
        use std::fmt::Write as _;
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        let r = self.x;
        let addr = format_args!("10.{}.{}.{}", r % 256, (r >> 8) % 256, (r >> 16) % 256);
        let time = format_args!(
            "21/Nov/2026:17:{:02}:{:02} +0000",
            (r >> 24) % 60,
            (r >> 30) % 60
        );
        let method = METHODS[(r >> 36) as usize % METHODS.len()];
        let path = PATHS[(r >> 40) as usize % PATHS.len()];
        let status = STATUS[(r >> 44) as usize % STATUS.len()];
        let bytes = (r >> 48) % 20000;
        let agent = AGENTS[(r >> 56) as usize % AGENTS.len()];
        let _ = match self.shape {
            Shape::Nginx => writeln!(
                line,
                r#"{addr} - - [{time}] "{method} {path} HTTP/1.1" {status} {bytes} "-" "{agent}""#
            ),
            Shape::Json => writeln!(
                line,
                r#"{{"remote_addr":"{addr}","remote_user":"-","time_local":"{time}","method":"{method}","path":"{path}","protocol":"HTTP/1.1","status":{status},"body_bytes_sent":{bytes},"http_referer":"-","http_user_agent":"{agent}"}}"#
            ),
        };
    }
}

/// Writes `lines` records to `path`; returns the bytes written.
pub fn generate(path: &Path, lines: u64, shape: Shape) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut records = Records::new(shape);
    let mut line = String::with_capacity(512);
    let mut written = 0u64;
    for _ in 0..lines {
        line.clear();
        records.next_into(&mut line);
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_hold_the_same_records() {
        let (mut a, mut b) = (Records::new(Shape::Nginx), Records::new(Shape::Json));
        let re = regex::Regex::new(super::super::NGINX_REGEX).unwrap();
        for _ in 0..100 {
            let (mut nginx, mut json) = (String::new(), String::new());
            a.next_into(&mut nginx);
            b.next_into(&mut json);
            let v: serde_json::Value = serde_json::from_str(&json).unwrap();
            let c = re.captures(nginx.trim_end()).unwrap();
            for name in ["remote_addr", "time_local", "method", "path"] {
                assert_eq!(v[name].as_str().unwrap(), &c[name]);
            }
            assert_eq!(v["status"].to_string(), &c["status"]);
            assert_eq!(v["body_bytes_sent"].to_string(), &c["body_bytes_sent"]);
        }
    }
}
