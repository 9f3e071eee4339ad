//! Protocol Buffers wire encoding, written straight from a batch: the
//! protobuf flushers (Loki's push API, OTLP) build their requests with
//! these instead of building message structs first. A nested message is
//! written in place and its length put in front afterwards; [`fields`]
//! reads the few small answers flushers need (OTLP's partial success).
//! Varints and keys come from `prost`.

use prost::encoding::{WireType, decode_varint, encode_key, encode_varint, encoded_len_varint};

/// A field read by [`fields`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    /// A varint.
    Varint(u64),
    /// 8 bytes (`fixed64`, `double`).
    Fixed64(u64),
    /// A length-delimited value (`string`, `bytes`, a message).
    Bytes(&'a [u8]),
    /// 4 bytes (`fixed32`, `float`).
    Fixed32(u32),
}

/// The fields of one message, in order, as `(number, value)`; `None` at
/// the first malformed byte.
pub fn fields(mut buf: &[u8]) -> Option<Vec<(u32, Field<'_>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = decode_varint(&mut buf).ok()?;
        let number = u32::try_from(key >> 3).ok()?;
        let take = |buf: &mut &'_ [u8], n: usize| -> Option<u64> {
            let (head, rest) = buf.split_at_checked(n)?;
            *buf = rest;
            let mut word = [0u8; 8];
            word[..n].copy_from_slice(head);
            Some(u64::from_le_bytes(word))
        };
        let value = match key & 7 {
            0 => Field::Varint(decode_varint(&mut buf).ok()?),
            1 => Field::Fixed64(take(&mut buf, 8)?),
            2 => {
                let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
                let (head, rest) = buf.split_at_checked(len)?;
                buf = rest;
                Field::Bytes(head)
            }
            5 => Field::Fixed32(take(&mut buf, 4)? as u32),
            _ => return None,
        };
        out.push((number, value));
    }
    Some(out)
}

/// Field `field` as a varint (`uint64`, `int64`, `int32`, `bool`, `enum`).
pub fn varint(out: &mut Vec<u8>, field: u32, value: u64) {
    encode_key(field, WireType::Varint, out);
    encode_varint(value, out);
}

/// Field `field` as `fixed64` (OTLP's times).
pub fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    encode_key(field, WireType::SixtyFourBit, out);
    out.extend_from_slice(&value.to_le_bytes());
}

/// Field `field` as `double`.
pub fn double(out: &mut Vec<u8>, field: u32, value: f64) {
    encode_key(field, WireType::SixtyFourBit, out);
    out.extend_from_slice(&value.to_le_bytes());
}

/// Field `field` as `bytes` or `string` (the caller keeps strings UTF-8).
pub fn bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    encode_key(field, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value);
}

/// Field `field` as a `string`, with invalid UTF-8 replaced by U+FFFD (a
/// protobuf decoder refuses a whole message over one bad string).
pub fn string(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    match std::str::from_utf8(value) {
        Ok(_) => bytes(out, field, value),
        Err(_) => bytes(out, field, String::from_utf8_lossy(value).as_bytes()),
    }
}

/// Field `field` as an embedded message that `body` writes.
pub fn message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    encode_key(field, WireType::LengthDelimited, out);
    // Room for a 1-byte length (messages under 128 bytes, most of them);
    // a longer one is moved up by the extra length bytes.
    let at = out.len();
    out.push(0);
    body(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
        return;
    }
    let width = encoded_len_varint(len as u64);
    let end = out.len();
    out.resize(end + width - 1, 0);
    out.copy_within(at + 1..end, at + width);
    let mut prefix = [0u8; 10];
    let mut slot = &mut prefix[..];
    encode_varint(len as u64, &mut slot);
    out[at..at + width].copy_from_slice(&prefix[..width]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_messages_get_their_length_in_front() {
        // message A { B b = 1; } message B { string s = 2; uint64 n = 3; }
        for len in [0usize, 5, 130, 20_000] {
            let text = "x".repeat(len);
            let mut out = Vec::new();
            message(&mut out, 1, |out| {
                string(out, 2, text.as_bytes());
                varint(out, 3, 300);
            });
            let inner_len = 1 + encoded_len_varint(len as u64) + len + 3;
            let mut want = vec![0x0a];
            encode_varint(inner_len as u64, &mut want);
            want.push(0x12);
            encode_varint(len as u64, &mut want);
            want.extend_from_slice(text.as_bytes());
            want.extend_from_slice(&[0x18, 0xac, 0x02]);
            assert_eq!(out, want, "{len}");
        }
        let mut out = Vec::new();
        string(&mut out, 1, b"a\xffb");
        assert_eq!(out, b"\x0a\x05a\xef\xbf\xbdb");
        let mut out = Vec::new();
        fixed64(&mut out, 9, 1);
        assert_eq!(out, [0x49, 1, 0, 0, 0, 0, 0, 0, 0]);
        message(&mut out, 1, |o| varint(o, 2, 7));
        assert_eq!(
            fields(&out),
            Some(vec![(9, Field::Fixed64(1)), (1, Field::Bytes(&[0x10, 7]))])
        );
        assert_eq!(fields(&[0x0a, 5, 1]), None);
    }
}
