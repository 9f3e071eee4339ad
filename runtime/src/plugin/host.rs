//! The host side of the `gleaner:plugin/host` interface: logging into
//! `tracing`, plugin counters, native compression (zstd-1, LZ4 frame,
//! gzip-1, raw snappy) and digests (SHA-256).

use std::io::Write;

use super::bindings::{wit, wit_host};
use super::store::StoreState;

/// Most distinct counter names one plugin may create.
const MAX_COUNTERS: usize = 64;

impl wit::Host for StoreState {}

impl wit_host::Host for StoreState {
    fn log(&mut self, level: wit::Level, message: String) {
        let (pipeline, plugin) = (&*self.ident.pipeline, &*self.ident.plugin);
        match level {
            wit::Level::Trace => tracing::trace!(pipeline, plugin, "{message}"),
            wit::Level::Debug => tracing::debug!(pipeline, plugin, "{message}"),
            wit::Level::Info => tracing::info!(pipeline, plugin, "{message}"),
            wit::Level::Warn => tracing::warn!(pipeline, plugin, "{message}"),
            wit::Level::Error => tracing::error!(pipeline, plugin, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        let mut counters = self
            .stats
            .counters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let len = counters.len();
        match counters.get_mut(&name) {
            Some(v) => *v += delta,
            None if len < MAX_COUNTERS => {
                counters.insert(name, delta);
            }
            None => {}
        }
    }

    fn compress(&mut self, codec: wit::Codec, data: Vec<u8>) -> Result<Vec<u8>, String> {
        compress(codec, &data).map_err(|e| e.to_string())
    }

    fn hash(&mut self, algorithm: wit::HashAlgorithm, data: Vec<u8>) -> Vec<u8> {
        use sha2::Digest as _;
        match algorithm {
            wit::HashAlgorithm::Sha256 => sha2::Sha256::digest(&data).to_vec(),
        }
    }
}

/// Compresses `data` natively.
pub fn compress(codec: wit::Codec, data: &[u8]) -> std::io::Result<Vec<u8>> {
    match codec {
        wit::Codec::Zstd => zstd::bulk::compress(data, 1),
        wit::Codec::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(data.len() / 2));
            enc.write_all(data)?;
            enc.finish().map_err(std::io::Error::other)
        }
        wit::Codec::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(data.len() / 2),
                flate2::Compression::fast(),
            );
            enc.write_all(data)?;
            enc.finish()
        }
        wit::Codec::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(std::io::Error::other),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let data = b"GET /index.html 200\n".repeat(1000);
        let z = compress(wit::Codec::Zstd, &data).unwrap();
        assert_eq!(zstd::bulk::decompress(&z, data.len()).unwrap(), data);
        let l = compress(wit::Codec::Lz4, &data).unwrap();
        let mut out = Vec::new();
        lz4_flex::frame::FrameDecoder::new(&l[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let g = compress(wit::Codec::Gzip, &data).unwrap();
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&g[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let s = compress(wit::Codec::Snappy, &data).unwrap();
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&s).unwrap(), data);
        assert!(z.len() < data.len() / 10);
    }
}
