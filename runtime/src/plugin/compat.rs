//! Plugins built against earlier, frozen versions of `gleaner:plugin`
//! (`wit/deps/`): their imports, mapped onto the current host functions.
//! Owns nothing else; a new version's additions never appear here.

use super::bindings::{v0_1, wit, wit_host};
use super::store::StoreState;

use v0_1::gleaner::plugin0_1_0::{host as host_0_1, types as types_0_1};

impl types_0_1::Host for StoreState {}

impl host_0_1::Host for StoreState {
    fn log(&mut self, level: types_0_1::Level, message: String) {
        let level = match level {
            types_0_1::Level::Trace => wit::Level::Trace,
            types_0_1::Level::Debug => wit::Level::Debug,
            types_0_1::Level::Info => wit::Level::Info,
            types_0_1::Level::Warn => wit::Level::Warn,
            types_0_1::Level::Error => wit::Level::Error,
        };
        wit_host::Host::log(self, level, message);
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        wit_host::Host::counter_add(self, name, delta);
    }

    fn compress(&mut self, codec: types_0_1::Codec, data: Vec<u8>) -> Result<Vec<u8>, String> {
        let codec = match codec {
            types_0_1::Codec::Zstd => wit::Codec::Zstd,
            types_0_1::Codec::Lz4 => wit::Codec::Lz4,
            types_0_1::Codec::Gzip => wit::Codec::Gzip,
        };
        wit_host::Host::compress(self, codec, data)
    }
}
