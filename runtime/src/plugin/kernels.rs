//! The host side of `gleaner:plugin/kernels`: the `regex` resources of one
//! store (in its resource table, at most `MAX_REGEXES` live) and the calls
//! that run `gleaner-kernels` over the columns a plugin passes in. Must not
//! touch batches, checkpoints or anything beyond those arguments.

use gleaner_kernels::{CompiledRegex, json_extract};
use wasmtime::component::Resource;

use super::bindings::kernels as wit;
use super::store::StoreState;

/// Most regexes one plugin instance may hold at once.
pub const MAX_REGEXES: usize = 256;

/// A kernel's error: the plugin called it wrong, so the call traps with
/// the reason (the host reports it like any other trap).
fn misuse(func: &str, e: String) -> wasmtime::Error {
    wasmtime::Error::msg(format!("kernels.{func}: {e}"))
}

impl StoreState {
    fn regex(&self, r: &Resource<CompiledRegex>) -> wasmtime::Result<&CompiledRegex> {
        Ok(self.table.get(r)?)
    }
}

impl wit::Host for StoreState {
    fn json_extract(
        &mut self,
        bodies: Vec<u8>,
        ends: Vec<u32>,
        paths: Vec<String>,
    ) -> wasmtime::Result<wit::JsonMembers> {
        let gleaner_kernels::JsonMembers {
            values,
            fields,
            types,
            invalid,
        } = json_extract(&bodies, &ends, &paths).map_err(|e| misuse("json-extract", e))?;
        Ok(wit::JsonMembers {
            values,
            fields: fields.into_flattened(),
            types,
            invalid,
        })
    }
}

impl wit::HostRegex for StoreState {
    fn compile(
        &mut self,
        pattern: String,
    ) -> wasmtime::Result<Result<Resource<CompiledRegex>, String>> {
        if self.regexes >= MAX_REGEXES {
            return Ok(Err(format!(
                "too many regexes: a plugin may hold {MAX_REGEXES} at once"
            )));
        }
        let re = match CompiledRegex::new(&pattern) {
            Ok(re) => re,
            Err(e) => return Ok(Err(e)),
        };
        self.regexes += 1;
        Ok(Ok(self.table.push(re)?))
    }

    fn group_names(&mut self, r: Resource<CompiledRegex>) -> wasmtime::Result<Vec<String>> {
        Ok(self.regex(&r)?.group_names())
    }

    fn matching(
        &mut self,
        r: Resource<CompiledRegex>,
        bodies: Vec<u8>,
        ends: Vec<u32>,
    ) -> wasmtime::Result<Vec<u32>> {
        self.regex(&r)?
            .matching(&bodies, &ends)
            .map_err(|e| misuse("matching", e))
    }

    fn find_all(
        &mut self,
        r: Resource<CompiledRegex>,
        bodies: Vec<u8>,
        ends: Vec<u32>,
    ) -> wasmtime::Result<Vec<u32>> {
        let found = self.regex(&r)?.find_all(&bodies, &ends);
        Ok(found.map_err(|e| misuse("find-all", e))?.into_flattened())
    }

    fn captures(
        &mut self,
        r: Resource<CompiledRegex>,
        bodies: Vec<u8>,
        ends: Vec<u32>,
    ) -> wasmtime::Result<Vec<u32>> {
        let found = self.regex(&r)?.captures(&bodies, &ends);
        Ok(found.map_err(|e| misuse("captures", e))?.into_flattened())
    }

    fn drop(&mut self, r: Resource<CompiledRegex>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        self.regexes -= 1;
        Ok(())
    }
}
