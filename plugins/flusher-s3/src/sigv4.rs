//! AWS Signature Version 4 for one S3 `PUT`, computed in the component
//! from the official description ("Create a signed AWS API request"):
//! canonical request, string to sign, signing key derived from the secret
//! by date, region and service, and the `Authorization` header. The
//! payload is signed too (`x-amz-content-sha256`).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Credentials (from `${...}` in the config).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `data`, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// URI-encodes a path as S3 wants it: every byte but unreserved ones and
/// `/` percent-encoded.
pub fn encode_path(path: &str) -> String {
    gleaner_sdk::http::percent_encode(path, b"/")
}

/// The headers that sign a `PUT` of a payload whose SHA-256 is
/// `payload_hash` to `path` (already encoded) on `host`, at `amz_date`
/// (`20261129T101500Z`), signing `extra` headers (lower-case names) too.
/// Returns every header to send but `host` (the HTTP layer sets it from
/// the same authority).
pub fn sign_put(
    creds: &Credentials,
    region: &str,
    host: &str,
    path: &str,
    payload_hash: &str,
    amz_date: &str,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let date = &amz_date[..8];
    let mut headers = vec![
        ("host".to_owned(), host.to_owned()),
        ("x-amz-content-sha256".to_owned(), payload_hash.to_owned()),
        ("x-amz-date".to_owned(), amz_date.to_owned()),
    ];
    if let Some(token) = &creds.session_token {
        headers.push(("x-amz-security-token".to_owned(), token.clone()));
    }
    headers.extend(extra.iter().cloned());
    headers.sort();
    let canonical_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let canonical = format!("PUT\n{path}\n\n{canonical_headers}\n{signed}\n{payload_hash}");
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let key = [region.as_bytes(), b"s3", b"aws4_request"].iter().fold(
        hmac(
            format!("AWS4{}", creds.secret_access_key).as_bytes(),
            date.as_bytes(),
        ),
        |k, part| hmac(&k, part),
    );
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    headers.retain(|(k, _)| k != "host");
    headers.push((
        "authorization".to_owned(),
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
            creds.access_key_id
        ),
    ));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented examples: the signing key of IAM's SigV4 example,
    /// and the signed `PUT Object` of Amazon S3's ("Signature calculations
    /// for the Authorization header: Transferring payload in a single
    /// chunk"), with the documentation's example credentials.
    #[test]
    fn signing_key_and_signature_follow_the_documented_steps() {
        // The documented derivation of a signing key (IAM's SigV4 example):
        // secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215,
        // us-east-1, iam.
        let k = [b"us-east-1".as_slice(), b"iam", b"aws4_request"]
            .iter()
            .fold(
                hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", b"20120215"),
                |k, part| hmac(&k, part),
            );
        assert_eq!(
            hex(&k),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let creds = Credentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            // S3's examples spell the example secret with `/bPx`, IAM's with `+bPx`.
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        };
        let payload = sha256_hex(b"Welcome to Amazon S3.");
        assert_eq!(
            payload,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let h = sign_put(
            &creds,
            "us-east-1",
            "examplebucket.s3.amazonaws.com",
            "/test%24file.text",
            &payload,
            "20130524T000000Z",
            &[
                ("date".into(), "Fri, 24 May 2013 00:00:00 GMT".into()),
                ("x-amz-storage-class".into(), "REDUCED_REDUNDANCY".into()),
            ],
        );
        let auth = &h.iter().find(|(k, _)| k == "authorization").unwrap().1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
        assert!(!h.iter().any(|(k, _)| k == "host"));
        assert_eq!(encode_path("/b/a b/é"), "/b/a%20b/%C3%A9");
    }
}
