//! Kafka's codecs, natively, for the input's fetched batches: gzip,
//! snappy (raw blocks; `gleaner-kafka` undoes the xerial framing), LZ4
//! frame and zstd. The input only reads, so compressing is refused.

use std::io::Read;

use gleaner_kafka::{Codecs, Compression};

/// The native codecs.
pub struct Native;

impl Codecs for Native {
    fn compress(&self, codec: Compression, _: &[u8]) -> Result<Vec<u8>, String> {
        Err(format!("the kafka input does not compress ({codec:?})"))
    }

    fn decompress(&self, codec: Compression, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(data.len() * 4);
        let r = match codec {
            Compression::None => {
                out.extend_from_slice(data);
                Ok(0)
            }
            Compression::Gzip => flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out),
            Compression::Lz4 => lz4_flex::frame::FrameDecoder::new(data).read_to_end(&mut out),
            Compression::Zstd => {
                zstd::stream::read::Decoder::new(data).and_then(|mut d| d.read_to_end(&mut out))
            }
            Compression::Snappy => {
                return snap::raw::Decoder::new()
                    .decompress_vec(data)
                    .map_err(|e| format!("snappy: {e}"));
            }
        };
        r.map(|_| out).map_err(|e| format!("{codec:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn each_codec_reads_what_its_reference_writer_wrote() {
        let data: Vec<u8> = (0..50_000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz.write_all(&data).unwrap();
        let cases = [
            (Compression::Gzip, gz.finish().unwrap()),
            (Compression::Lz4, lz.finish().unwrap()),
            (Compression::Zstd, zstd::bulk::compress(&data, 1).unwrap()),
            (
                Compression::Snappy,
                snap::raw::Encoder::new().compress_vec(&data).unwrap(),
            ),
        ];
        for (c, packed) in cases {
            assert_eq!(Native.decompress(c, &packed).unwrap(), data, "{c:?}");
        }
        assert!(Native.decompress(Compression::Gzip, b"not gzip").is_err());
    }
}
