//! SASL over Kafka's `SaslHandshake` + `SaslAuthenticate`: PLAIN (RFC
//! 4616) and SCRAM-SHA-256/512 (RFC 5802/7677), the mechanisms Kafka
//! brokers offer without Kerberos or OAuth. Owns the exchange only; the
//! connection calls it once after negotiating versions.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use kafka_protocol::messages as m;
use kafka_protocol::protocol::StrBytes;
use sha2::{Digest, Sha256, Sha512};

use crate::Error;
use crate::wire::Connection;

/// A SASL mechanism with its credentials.
#[derive(Clone)]
pub struct Sasl {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Sasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The mechanisms supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// `PLAIN`: the password in the clear (use it over TLS only).
    Plain,
    /// `SCRAM-SHA-256`.
    ScramSha256,
    /// `SCRAM-SHA-512`.
    ScramSha512,
}

impl Mechanism {
    /// The name the broker knows it by.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Parses a mechanism name as Kafka clients spell it.
    pub fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Some(Mechanism::Plain),
            "SCRAM-SHA-256" => Some(Mechanism::ScramSha256),
            "SCRAM-SHA-512" => Some(Mechanism::ScramSha512),
            _ => None,
        }
    }
}

impl Sasl {
    /// Runs the exchange on a fresh connection.
    pub(crate) fn authenticate(&self, conn: &mut Connection) -> Result<(), Error> {
        let fail = |conn: &Connection, message: String| Error::Auth {
            addr: conn.addr().to_owned(),
            message,
        };
        let hs = conn
            .call(
                &m::SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str(self.mechanism.name())),
            )
            .map_err(|e| match e {
                // Kafka answers UNSUPPORTED_SASL_MECHANISM; some brokers
                // (tansu 0.6.0) just close the connection.
                Error::Io { .. } => fail(
                    conn,
                    format!(
                        "the broker closed the connection when asked for {} ({e}): \
                         it may not offer that mechanism",
                        self.mechanism.name()
                    ),
                ),
                e => e,
            })?;
        if hs.error_code != 0 {
            let offered: Vec<&str> = hs.mechanisms.iter().map(|s| s.as_str()).collect();
            return Err(fail(
                conn,
                format!(
                    "{} is not enabled on this listener (it offers {offered:?})",
                    self.mechanism.name()
                ),
            ));
        }
        match self.mechanism {
            Mechanism::Plain => {
                step(conn, plain_message(&self.username, &self.password))?;
                Ok(())
            }
            Mechanism::ScramSha256 => self.scram(conn, Hash::Sha256),
            Mechanism::ScramSha512 => self.scram(conn, Hash::Sha512),
        }
    }

    fn scram(&self, conn: &mut Connection, hash: Hash) -> Result<(), Error> {
        let mut scram = Scram::new(hash, &self.username, &self.password, &nonce());
        let server_first = step(conn, scram.client_first().into_bytes())?;
        let client_final = scram
            .client_final(&String::from_utf8_lossy(&server_first))
            .map_err(|m| Error::Auth {
                addr: conn.addr().to_owned(),
                message: m,
            })?;
        let server_final = step(conn, client_final.into_bytes())?;
        scram
            .verify_server(&String::from_utf8_lossy(&server_final))
            .map_err(|m| Error::Auth {
                addr: conn.addr().to_owned(),
                message: m,
            })
    }
}

fn step(conn: &mut Connection, bytes: Vec<u8>) -> Result<Bytes, Error> {
    let resp =
        conn.call(&m::SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)))?;
    if resp.error_code != 0 {
        return Err(Error::Auth {
            addr: conn.addr().to_owned(),
            message: resp
                .error_message
                .map(|s| s.to_string())
                .unwrap_or_else(|| crate::error_name(resp.error_code)),
        });
    }
    Ok(resp.auth_bytes)
}

/// RFC 4616's message: no authorization identity, then the
/// authentication identity and the password, each after a NUL.
fn plain_message(username: &str, password: &str) -> Vec<u8> {
    format!("\0{username}\0{password}").into_bytes()
}

/// A client nonce: 24 random bytes, base64 (std's hasher keys come from
/// the OS, or `wasi:random` in a component).
fn nonce() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = Vec::with_capacity(24);
    for i in 0..3u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        bytes.extend_from_slice(&h.finish().to_le_bytes());
    }
    B64.encode(bytes)
}

/// SCRAM's hash function.
#[derive(Debug, Clone, Copy)]
enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Hash::Sha256 => run::<Hmac<Sha256>>(key, data),
            Hash::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    fn salt_password(self, password: &[u8], salt: &[u8], rounds: u32) -> Vec<u8> {
        match self {
            Hash::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, rounds).to_vec()
            }
            Hash::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, rounds).to_vec()
            }
        }
    }
}

/// The client side of one SCRAM exchange.
struct Scram {
    hash: Hash,
    user: String,
    password: String,
    nonce: String,
    auth_message: String,
    salted: Vec<u8>,
}

impl Scram {
    fn new(hash: Hash, user: &str, password: &str, nonce: &str) -> Self {
        Scram {
            hash,
            user: user.replace('=', "=3D").replace(',', "=2C"),
            password: password.to_owned(),
            nonce: nonce.to_owned(),
            auth_message: String::new(),
            salted: Vec::new(),
        }
    }

    fn bare(&self) -> String {
        format!("n={},r={}", self.user, self.nonce)
    }

    fn client_first(&self) -> String {
        format!("n,,{}", self.bare())
    }

    fn client_final(&mut self, server_first: &str) -> Result<String, String> {
        let attr = |name: &str| {
            server_first
                .split(',')
                .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                .ok_or_else(|| {
                    format!("the server's first message has no `{name}`: {server_first}")
                })
        };
        let nonce = attr("r")?;
        if !nonce.starts_with(&self.nonce) {
            return Err("the server's nonce does not extend ours".into());
        }
        let salt = B64
            .decode(attr("s")?)
            .map_err(|e| format!("the server's salt is not base64: {e}"))?;
        let iterations: u32 = attr("i")?
            .parse()
            .map_err(|_| "the server's iteration count is not a number".to_string())?;
        let salted = self
            .hash
            .salt_password(self.password.as_bytes(), &salt, iterations);
        let without_proof = format!("c=biws,r={nonce}");
        self.auth_message = format!("{},{server_first},{without_proof}", self.bare());
        let client_key = self.hash.hmac(&salted, b"Client Key");
        let stored_key = self.hash.digest(&client_key);
        let signature = self.hash.hmac(&stored_key, self.auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        self.salted = salted;
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    fn verify_server(&self, server_final: &str) -> Result<(), String> {
        if let Some(e) = server_final.strip_prefix("e=") {
            return Err(format!("the server refused: {e}"));
        }
        let v = server_final
            .strip_prefix("v=")
            .ok_or_else(|| format!("unexpected final message: {server_final}"))?;
        let server_key = self.hash.hmac(&self.salted, b"Server Key");
        let expected = self.hash.hmac(&server_key, self.auth_message.as_bytes());
        if B64.decode(v).ok().as_deref() != Some(&expected[..]) {
            return Err(
                "the server's signature does not match: not the server that holds our credentials"
                    .into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3's example exchange, byte for byte.
    #[test]
    fn scram_sha_256_reproduces_rfc_7677() {
        let mut s = Scram::new(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(s.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(
            s.client_final(server_first).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert!(
            s.verify_server("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .is_ok()
        );
        assert!(
            s.verify_server("v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .is_err()
        );
    }

    #[test]
    fn plain_is_rfc_4616s_message() {
        assert_eq!(
            plain_message("tim", "tanstaaftanstaaf"),
            b"\0tim\0tanstaaftanstaaf"
        );
    }

    #[test]
    fn user_names_are_escaped() {
        let s = Scram::new(Hash::Sha256, "a=b,c", "p", "n");
        assert_eq!(s.bare(), "n=a=3Db=2Cc,r=n");
    }
}
