//! A small HTTP/1.0 client of a running agent's local API, for the tools
//! that talk to it (`top`, `tap`, `dead-letter replay`): one request per
//! connection, the token from `GLEANER_API_TOKEN` when set, the body read
//! whole or as it streams (HTTP/1.0: the server closes when done).
//!
//! Knows requests and statuses; not what the endpoints mean.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The variable holding the API's token (`api.token`).
pub const TOKEN_VAR: &str = "GLEANER_API_TOKEN";

/// Why the agent could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// It did not answer.
    #[error(
        "cannot reach the agent's API at http://{addr}{path}: {error} (is the agent running with `api: {{address: {addr}}}`?)"
    )]
    Connect {
        /// Where it was asked.
        addr: SocketAddr,
        /// What was asked.
        path: String,
        /// What failed.
        error: std::io::Error,
    },
    /// It answered with an error.
    #[error("http://{addr}{path} answered {status}: {text}")]
    Status {
        /// Where it was asked.
        addr: SocketAddr,
        /// What was asked.
        path: String,
        /// The status code.
        status: u16,
        /// The body.
        text: String,
    },
}

/// A running agent's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    /// Its address.
    pub addr: SocketAddr,
    /// Sent as `Authorization: Bearer`.
    pub token: Option<String>,
}

/// An answer whose body is still to be read.
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The head, status line and headers.
    pub head: String,
    /// The body, as it comes.
    pub body: BufReader<TcpStream>,
}

impl ApiClient {
    /// The API at `addr`, with the token from [`TOKEN_VAR`] if set.
    pub fn new(addr: SocketAddr) -> Self {
        let token = std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty());
        ApiClient { addr, token }
    }

    /// Sends `method path` and reads the head; `read_timeout` bounds each
    /// read (`None`: wait as long as it takes, for streams).
    pub fn open(
        &self,
        method: &str,
        path: &str,
        read_timeout: Option<Duration>,
    ) -> Result<Answer, ClientError> {
        let connect = |error| ClientError::Connect {
            addr: self.addr,
            path: path.to_owned(),
            error,
        };
        let mut stream =
            TcpStream::connect_timeout(&self.addr, Duration::from_secs(3)).map_err(connect)?;
        stream.set_read_timeout(read_timeout).map_err(connect)?;
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\n{auth}Content-Length: 0\r\n\r\n",
            self.addr
        )
        .map_err(connect)?;
        let mut body = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if body.read_line(&mut line).map_err(connect)? == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(0);
        Ok(Answer { status, head, body })
    }

    /// Sends `method path`; the body of a 2xx answer, else an error with
    /// the status and the body.
    pub fn call(&self, method: &str, path: &str) -> Result<(u16, String), ClientError> {
        let mut answer = self.open(method, path, Some(Duration::from_secs(30)))?;
        let mut text = String::new();
        answer
            .body
            .read_to_string(&mut text)
            .map_err(|error| ClientError::Connect {
                addr: self.addr,
                path: path.to_owned(),
                error,
            })?;
        answer.check(self, path, text)
    }
}

impl Answer {
    /// `Ok` with `text` for a 2xx status, else the error.
    pub fn check(
        &self,
        client: &ApiClient,
        path: &str,
        text: String,
    ) -> Result<(u16, String), ClientError> {
        if (200..300).contains(&self.status) {
            Ok((self.status, text))
        } else {
            Err(ClientError::Status {
                addr: client.addr,
                path: path.to_owned(),
                status: self.status,
                text: text.trim_end().to_owned(),
            })
        }
    }
}

/// `s` percent-encoded for a query value.
pub fn encode(s: &str) -> String {
    gleaner_sdk::http::percent_encode(s, b"")
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(
            super::encode("flusher:builtin:file"),
            "flusher%3Abuiltin%3Afile"
        );
        assert_eq!(super::encode("a b/é"), "a%20b%2F%C3%A9");
    }
}
