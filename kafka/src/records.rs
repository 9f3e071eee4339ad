//! Record batches (message format v2) with the caller's codecs, and the
//! partitioner Java clients use, so that a key lands where a Java, Go
//! (sarama's "murmur2" hasher) or Python producer would put it. Encoding
//! and decoding are `kafka-protocol`'s; this module adds compression
//! through [`Codecs`], snappy's xerial framing and the split of fetched
//! bytes into whole batches.

use bytes::{Buf, Bytes};
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use crate::{Codecs, Error};

/// A record to produce.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Bytes,
    /// Headers.
    pub headers: Vec<(String, Bytes)>,
}

impl Outgoing {
    /// Bytes the record takes in a batch before compression, at most
    /// (varint lengths counted at their widest).
    pub fn size_bound(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 10)
            .sum();
        self.value.len() + self.key.as_ref().map_or(0, Bytes::len) + headers + 30
    }
}

/// A record read from a partition.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Its offset.
    pub offset: i64,
    /// Milliseconds since the epoch (creation or log append time).
    pub timestamp_ms: i64,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value (`None` for a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Size of a batch's header before its records.
pub const BATCH_OVERHEAD: usize = 61;

/// Encodes `records` as one record batch (message format v2: offsets
/// from 0, no producer id, so not idempotent), compressed with
/// `compression` through `codecs`.
///
/// Written here in one pass into a buffer sized up front, rather than with
/// `kafka-protocol`'s `RecordBatchEncoder`, which builds a `Record` per
/// record and walks them several times: about 1 µs per record, the
/// flusher's largest cost in Wasm. The layout is Kafka's
/// (`DefaultRecordBatch`); the tests decode it with `kafka-protocol`'s
/// decoder and the end-to-end tests with kafka-python.
pub fn encode(
    records: &[Outgoing],
    compression: Compression,
    codecs: &dyn Codecs,
) -> Result<Bytes, Error> {
    let first_ts = records.first().map_or(0, |r| r.timestamp_ms);
    let max_ts = records
        .iter()
        .map(|r| r.timestamp_ms)
        .max()
        .unwrap_or(first_ts);
    let mut raw = Vec::with_capacity(records.iter().map(Outgoing::size_bound).sum());
    for (i, r) in records.iter().enumerate() {
        let mut body = [0u8; 1 + 10 + 5];
        let mut at = 1; // attributes: 0
        at += put_varlong(&mut body[at..], r.timestamp_ms - first_ts);
        at += put_varlong(&mut body[at..], i as i64);
        let key_len = r.key.as_ref().map_or(-1, |k| k.len() as i64);
        let mut lens = [0u8; 30];
        let mut l = put_varlong(&mut lens, key_len);
        let key_end = l;
        l += put_varlong(&mut lens[l..], r.value.len() as i64);
        let value_len_end = l;
        l += put_varlong(&mut lens[l..], r.headers.len() as i64);
        let headers: usize = r
            .headers
            .iter()
            .map(|(k, v)| {
                varlong_len(k.len() as i64) + k.len() + varlong_len(v.len() as i64) + v.len()
            })
            .sum();
        let size = at
            + key_end
            + r.key.as_ref().map_or(0, Bytes::len)
            + (value_len_end - key_end)
            + r.value.len()
            + (l - value_len_end)
            + headers;
        let mut len = [0u8; 10];
        let n = put_varlong(&mut len, size as i64);
        raw.extend_from_slice(&len[..n]);
        raw.extend_from_slice(&body[..at]);
        raw.extend_from_slice(&lens[..key_end]);
        if let Some(k) = &r.key {
            raw.extend_from_slice(k);
        }
        raw.extend_from_slice(&lens[key_end..value_len_end]);
        raw.extend_from_slice(&r.value);
        raw.extend_from_slice(&lens[value_len_end..l]);
        for (k, v) in &r.headers {
            let n = put_varlong(&mut len, k.len() as i64);
            raw.extend_from_slice(&len[..n]);
            raw.extend_from_slice(k.as_bytes());
            let n = put_varlong(&mut len, v.len() as i64);
            raw.extend_from_slice(&len[..n]);
            raw.extend_from_slice(v);
        }
    }
    let packed;
    let payload: &[u8] = if compression == Compression::None {
        &raw
    } else {
        packed = compress(codecs, compression, &raw).map_err(Error::Codec)?;
        &packed
    };
    let mut out = Vec::with_capacity(BATCH_OVERHEAD + payload.len());
    out.extend_from_slice(&0i64.to_be_bytes()); // base offset
    let length = (BATCH_OVERHEAD - 12 + payload.len()) as i32;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    out.push(2); // magic
    out.extend_from_slice(&[0; 4]); // crc, below
    out.extend_from_slice(&(compression as i16).to_be_bytes()); // attributes
    out.extend_from_slice(&(records.len() as i32 - 1).max(0).to_be_bytes()); // last offset delta
    out.extend_from_slice(&first_ts.to_be_bytes());
    out.extend_from_slice(&max_ts.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    out.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    out.extend_from_slice(&(records.len() as i32).to_be_bytes());
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Bytes::from(out))
}

/// Writes `v` zigzag-encoded as a varint; returns the bytes written.
fn put_varlong(out: &mut [u8], v: i64) -> usize {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut i = 0;
    while z >= 0x80 {
        out[i] = (z as u8) | 0x80;
        z >>= 7;
        i += 1;
    }
    out[i] = z as u8;
    i + 1
}

fn varlong_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - z.max(1).leading_zeros() as usize).div_ceil(7)
}

/// The xerial snappy stream header Java's `SnappyOutputStream` writes:
/// magic, version 1, minimum compatible version 1.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// Uncompressed bytes per xerial block (snappy-java's default).
const XERIAL_BLOCK: usize = 32 << 10;

fn compress(codecs: &dyn Codecs, c: Compression, raw: &[u8]) -> Result<Vec<u8>, String> {
    match c {
        Compression::None => Ok(raw.to_vec()),
        Compression::Snappy => {
            let mut out = Vec::with_capacity(raw.len() / 2 + 16);
            out.extend_from_slice(XERIAL_HEADER);
            for block in raw.chunks(XERIAL_BLOCK) {
                let packed = codecs.compress(Compression::Snappy, block)?;
                out.extend_from_slice(&(packed.len() as u32).to_be_bytes());
                out.extend_from_slice(&packed);
            }
            Ok(out)
        }
        other => codecs.compress(other, raw),
    }
}

fn decompress(codecs: &dyn Codecs, c: Compression, data: &[u8]) -> Result<Vec<u8>, String> {
    match c {
        Compression::None => Ok(data.to_vec()),
        Compression::Snappy if data.starts_with(&XERIAL_HEADER[..8]) => {
            let mut rest = data.get(16..).unwrap_or_default();
            let mut out = Vec::with_capacity(data.len() * 3);
            while rest.len() >= 4 {
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let block = rest
                    .get(4..4 + len)
                    .ok_or("a snappy block runs past its batch")?;
                out.extend_from_slice(&codecs.decompress(Compression::Snappy, block)?);
                rest = &rest[4 + len..];
            }
            Ok(out)
        }
        other => codecs.decompress(other, data),
    }
}

/// Decodes the record batches in `data` (a fetch's `records`), skipping
/// control records and records before `from`. A batch cut short at the
/// end (fetches stop at a byte limit, not a batch boundary) is left out.
/// Also returns the offset to fetch next (after the last whole batch,
/// control records included), `from` when there was none.
pub fn decode(
    mut data: Bytes,
    from: i64,
    codecs: &dyn Codecs,
) -> Result<(Vec<Incoming>, i64), Error> {
    let mut out = Vec::new();
    let mut next = from;
    while data.len() >= 12 {
        let len = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let total = 12 + len.max(0) as usize;
        if data.len() < total {
            break;
        }
        let mut batch = data.split_to(total);
        if batch.get(16) != Some(&2) {
            // Message sets v0/v1 (written before Kafka 0.11): skipped, as
            // this client does not read them.
            continue;
        }
        let set = RecordBatchDecoder::decode_with_custom_compression(
            &mut batch,
            Some(|packed: &mut Bytes, c: Compression| {
                let raw = decompress(codecs, c, packed).map_err(anyhow::Error::msg)?;
                packed.advance(packed.len());
                Ok(Bytes::from(raw))
            }),
        )
        .map_err(|e| Error::Codec(format!("cannot decode a record batch: {e}")))?;
        for r in set.records {
            next = next.max(r.offset + 1);
            if r.control || r.offset < from {
                continue;
            }
            out.push(Incoming {
                offset: r.offset,
                timestamp_ms: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            });
        }
    }
    Ok((out, next))
}

/// Java's `Utils.murmur2`: MurmurHash2, seed `0x9747b28c`.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Java's default partitioner picks for `key` among `count`.
pub fn partition_for_key(key: &[u8], count: usize) -> usize {
    ((murmur2(key) & 0x7fff_ffff) as usize) % count.max(1)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    #[test]
    fn varints_are_zigzag_and_their_lengths_agree() {
        let mut buf = [0u8; 10];
        for (v, want) in [
            (0i64, &[0u8][..]),
            (-1, &[1]),
            (1, &[2]),
            (63, &[126]),
            (64, &[128, 1]),
            (-65, &[129, 1]),
        ] {
            let n = put_varlong(&mut buf, v);
            assert_eq!(&buf[..n], want, "{v}");
        }
        for v in [
            0i64,
            1,
            -1,
            63,
            64,
            8191,
            8192,
            -8193,
            i32::MAX as i64,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(varlong_len(v), put_varlong(&mut buf, v), "{v}");
        }
    }

    /// Kafka's own `UtilsTest.testMurmur2` cases.
    #[test]
    fn murmur2_matches_javas() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (data, want) in cases {
            assert_eq!(murmur2(data), *want, "{}", String::from_utf8_lossy(data));
        }
    }

    struct Identity;
    impl Codecs for Identity {
        fn compress(&self, _: Compression, data: &[u8]) -> Result<Vec<u8>, String> {
            let mut v = data.to_vec();
            v.reverse();
            Ok(v)
        }
        fn decompress(&self, _: Compression, data: &[u8]) -> Result<Vec<u8>, String> {
            let mut v = data.to_vec();
            v.reverse();
            Ok(v)
        }
    }

    #[test]
    fn batches_round_trip_through_the_callers_codecs_and_xerial_framing() {
        let records: Vec<Outgoing> = (0..1000)
            .map(|i| Outgoing {
                timestamp_ms: 1_700_000_000_000 + i,
                key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                value: Bytes::from(format!("line {i} {}", "x".repeat(i as usize % 300))),
                headers: vec![("h".into(), Bytes::from_static(b"v"))],
            })
            .collect();
        for c in [Compression::None, Compression::Snappy, Compression::Zstd] {
            let mut data = BytesMut::new();
            data.extend_from_slice(&encode(&records, c, &Identity).unwrap());
            assert_eq!(data[16], 2, "message format v2");
            assert_eq!(i16::from_be_bytes([data[21], data[22]]) & 7, c as i16);
            // A second batch cut short is left out.
            let second = encode(&records[..3], c, &Identity).unwrap();
            data.extend_from_slice(&second[..second.len() - 1]);
            let (got, next) = decode(data.freeze(), 10, &Identity).unwrap();
            assert_eq!(next, 1000);
            assert_eq!(got.len(), 990);
            assert_eq!(got[0].offset, 10);
            assert_eq!(got[0].value.as_deref(), Some(&records[10].value[..]));
            assert_eq!(got[0].key.as_deref(), Some(&b"k10"[..]));
            assert_eq!(got[1].key, None);
            assert_eq!(got[989].timestamp_ms, 1_700_000_000_999);
            assert_eq!(
                got[5].headers,
                vec![("h".into(), Some(Bytes::from_static(b"v")))]
            );
        }
    }
}
