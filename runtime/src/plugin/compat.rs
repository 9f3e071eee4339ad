//! Plugins built against earlier, frozen versions of `gleaner:plugin`
//! (`wit/deps/`): their imports, mapped onto the current host functions.
//! Owns nothing else; a new version's additions never appear here.

use gleaner_kernels::CompiledRegex;
use wasmtime::component::Resource;

use super::bindings::{kernels, v0_1, v0_2, v0_3, wit, wit_host};
use super::store::StoreState;

use v0_1::gleaner::plugin0_1_0::{host as host_0_1, types as types_0_1};

macro_rules! level_and_codec {
    ($types:path) => {{
        use $types as t;
        (
            |level: t::Level| match level {
                t::Level::Trace => wit::Level::Trace,
                t::Level::Debug => wit::Level::Debug,
                t::Level::Info => wit::Level::Info,
                t::Level::Warn => wit::Level::Warn,
                t::Level::Error => wit::Level::Error,
            },
            |codec: t::Codec| match codec {
                t::Codec::Zstd => wit::Codec::Zstd,
                t::Codec::Lz4 => wit::Codec::Lz4,
                t::Codec::Gzip => wit::Codec::Gzip,
            },
        )
    }};
}

impl types_0_1::Host for StoreState {}

impl host_0_1::Host for StoreState {
    fn log(&mut self, level: types_0_1::Level, message: String) {
        let (level_of, _) = level_and_codec!(types_0_1);
        wit_host::Host::log(self, level_of(level), message);
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        wit_host::Host::counter_add(self, name, delta);
    }

    fn compress(&mut self, codec: types_0_1::Codec, data: Vec<u8>) -> Result<Vec<u8>, String> {
        let (_, codec_of) = level_and_codec!(types_0_1);
        wit_host::Host::compress(self, codec_of(codec), data)
    }
}

impl v0_3::types::Host for StoreState {}

impl v0_3::host::Host for StoreState {
    fn log(&mut self, level: v0_3::types::Level, message: String) {
        let (level_of, _) = level_and_codec!(v0_3::types);
        wit_host::Host::log(self, level_of(level), message);
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        wit_host::Host::counter_add(self, name, delta);
    }

    fn compress(&mut self, codec: v0_3::types::Codec, data: Vec<u8>) -> Result<Vec<u8>, String> {
        let (_, codec_of) = level_and_codec!(v0_3::types);
        wit_host::Host::compress(self, codec_of(codec), data)
    }
}

/// 0.3.0 kernels are 0.4.0's, in types of their own.
impl v0_3::kernels::Host for StoreState {
    fn json_extract(
        &mut self,
        bodies: Vec<u8>,
        ends: Vec<u32>,
        paths: Vec<String>,
    ) -> wasmtime::Result<v0_3::kernels::JsonMembers> {
        let m = kernels::Host::json_extract(self, bodies, ends, paths)?;
        Ok(v0_3::kernels::JsonMembers {
            values: m.values,
            fields: m.fields,
            types: m.types,
            invalid: m.invalid,
        })
    }
}

impl v0_3::kernels::HostRegex for StoreState {
    fn compile(
        &mut self,
        pattern: String,
    ) -> wasmtime::Result<Result<Resource<CompiledRegex>, String>> {
        kernels::HostRegex::compile(self, pattern)
    }

    fn group_names(&mut self, r: Resource<CompiledRegex>) -> wasmtime::Result<Vec<String>> {
        kernels::HostRegex::group_names(self, r)
    }

    fn matching(
        &mut self,
        r: Resource<CompiledRegex>,
        bodies: Vec<u8>,
        ends: Vec<u32>,
    ) -> wasmtime::Result<Vec<u32>> {
        kernels::HostRegex::matching(self, r, bodies, ends)
    }

    fn find_all(
        &mut self,
        r: Resource<CompiledRegex>,
        bodies: Vec<u8>,
        ends: Vec<u32>,
    ) -> wasmtime::Result<Vec<u32>> {
        kernels::HostRegex::find_all(self, r, bodies, ends)
    }

    fn captures(
        &mut self,
        r: Resource<CompiledRegex>,
        bodies: Vec<u8>,
        ends: Vec<u32>,
    ) -> wasmtime::Result<Vec<u32>> {
        kernels::HostRegex::captures(self, r, bodies, ends)
    }

    fn drop(&mut self, r: Resource<CompiledRegex>) -> wasmtime::Result<()> {
        kernels::HostRegex::drop(self, r)
    }
}

impl v0_2::types::Host for StoreState {}

impl v0_2::host::Host for StoreState {
    fn log(&mut self, level: v0_2::types::Level, message: String) {
        let (level_of, _) = level_and_codec!(v0_2::types);
        wit_host::Host::log(self, level_of(level), message);
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        wit_host::Host::counter_add(self, name, delta);
    }

    fn compress(&mut self, codec: v0_2::types::Codec, data: Vec<u8>) -> Result<Vec<u8>, String> {
        let (_, codec_of) = level_and_codec!(v0_2::types);
        wit_host::Host::compress(self, codec_of(codec), data)
    }
}

/// 0.2.0 kernels answered lists of records where 0.3.0 answers flat columns.
impl v0_2::kernels::Host for StoreState {
    fn json_extract(
        &mut self,
        bodies: Vec<u8>,
        ends: Vec<u32>,
        paths: Vec<String>,
    ) -> wasmtime::Result<v0_2::kernels::JsonMembers> {
        let m = kernels::Host::json_extract(self, bodies, ends, paths)?;
        Ok(v0_2::kernels::JsonMembers {
            values: m.values,
            fields: super::convert::fields_v0_2(&m.fields),
            invalid: m.invalid,
        })
    }
}

impl v0_2::kernels::HostRegex for StoreState {
    fn compile(
        &mut self,
        pattern: String,
    ) -> wasmtime::Result<Result<Resource<CompiledRegex>, String>> {
        kernels::HostRegex::compile(self, pattern)
    }

    fn group_names(&mut self, r: Resource<CompiledRegex>) -> wasmtime::Result<Vec<String>> {
        kernels::HostRegex::group_names(self, r)
    }

    fn matching(
        &mut self,
        r: Resource<CompiledRegex>,
        bodies: Vec<u8>,
        ends: Vec<u32>,
    ) -> wasmtime::Result<Vec<u32>> {
        kernels::HostRegex::matching(self, r, bodies, ends)
    }

    fn find_all(
        &mut self,
        r: Resource<CompiledRegex>,
        bodies: Vec<u8>,
        ends: Vec<u32>,
    ) -> wasmtime::Result<Vec<v0_2::kernels::Span>> {
        let flat = kernels::HostRegex::find_all(self, r, bodies, ends)?;
        Ok(flat
            .chunks_exact(3)
            .map(|s| v0_2::kernels::Span {
                event: s[0],
                start: s[1],
                len: s[2],
            })
            .collect())
    }

    fn captures(
        &mut self,
        r: Resource<CompiledRegex>,
        bodies: Vec<u8>,
        ends: Vec<u32>,
    ) -> wasmtime::Result<Vec<v0_2::kernels::Capture>> {
        let flat = kernels::HostRegex::captures(self, r, bodies, ends)?;
        Ok(flat
            .chunks_exact(4)
            .map(|c| v0_2::kernels::Capture {
                event: c[0],
                group: c[1],
                start: c[2],
                len: c[3],
            })
            .collect())
    }

    fn drop(&mut self, r: Resource<CompiledRegex>) -> wasmtime::Result<()> {
        kernels::HostRegex::drop(self, r)
    }
}
