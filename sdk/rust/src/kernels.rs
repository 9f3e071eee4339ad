//! Native kernels: hot primitives the Gleaner host runs over a whole body
//! column in one call (`gleaner:plugin/kernels`), so a plugin pays Wasm
//! speed only for its own logic. Offsets in results index the column passed
//! in ([`Batch::body_column`]): a match is `bodies[start..start + len]`.
//!
//! In a native build (a plugin's own `cargo test`) the same code runs in
//! process, from the `gleaner-kernels` crate the host uses, so tests give
//! the answers the host will.
//!
//! ```ignore
//! let re = Regex::new(r"(?P<status>\d{3}) (?P<bytes>\d+)")?;   // in init
//! for c in re.captures(&batch) { /* c.event, c.group, c.start, c.len */ }
//! ```

use crate::Batch;

/// A match: `bodies[start .. start + len]`, in event `event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The event.
    pub event: u32,
    /// Byte offset into the column.
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
}

/// Group `group` (0 is the whole match) of event `event`'s first match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capture {
    /// The event.
    pub event: u32,
    /// The group.
    pub group: u32,
    /// Byte offset into the column.
    pub start: u32,
    /// Length in bytes.
    pub len: u32,
}

/// One JSON member found by [`json_extract`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The event.
    pub event: u32,
    /// Index into the paths asked for.
    pub key: u32,
    /// Offset of its value in [`JsonMembers::values`].
    pub start: u32,
    /// Length of its value.
    pub len: u32,
    /// Its type (see [`crate::value`]): strings are unescaped text, other
    /// values compact JSON.
    pub ty: u8,
}

/// What [`json_extract`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonMembers {
    /// The values, concatenated.
    pub values: Vec<u8>,
    /// The members found, by event.
    pub fields: Vec<Member>,
    /// Events whose body is not a JSON object.
    pub invalid: Vec<u32>,
}

impl JsonMembers {
    /// The value bytes of a member.
    pub fn value(&self, m: &Member) -> &[u8] {
        self.values
            .get(m.start as usize..(m.start + m.len) as usize)
            .unwrap_or_default()
    }
}

fn spans(flat: &[u32]) -> Vec<Span> {
    flat.chunks_exact(3)
        .map(|s| Span {
            event: s[0],
            start: s[1],
            len: s[2],
        })
        .collect()
}

fn captures(flat: &[u32]) -> Vec<Capture> {
    flat.chunks_exact(4)
        .map(|c| Capture {
            event: c[0],
            group: c[1],
            start: c[2],
            len: c[3],
        })
        .collect()
}

fn members(values: Vec<u8>, fields: &[u32], types: &[u8], invalid: Vec<u32>) -> JsonMembers {
    let fields = fields
        .chunks_exact(4)
        .zip(types)
        .map(|(f, &ty)| Member {
            event: f[0],
            key: f[1],
            start: f[2],
            len: f[3],
            ty,
        })
        .collect();
    JsonMembers {
        values,
        fields,
        invalid,
    }
}

/// A regex compiled and run by the host (Rust `regex` syntax, linear time).
/// Compile it once, in `init`, and reuse it for every batch.
#[derive(Debug)]
pub struct Regex {
    #[cfg(target_arch = "wasm32")]
    re: crate::bindings::wit_kernels::Regex,
    #[cfg(not(target_arch = "wasm32"))]
    re: gleaner_kernels::CompiledRegex,
}

impl Regex {
    /// Compiles `pattern`, or says why it is invalid.
    pub fn new(pattern: &str) -> Result<Regex, String> {
        #[cfg(target_arch = "wasm32")]
        let re = crate::bindings::wit_kernels::Regex::compile(pattern)?;
        #[cfg(not(target_arch = "wasm32"))]
        let re = gleaner_kernels::CompiledRegex::new(pattern)?;
        Ok(Regex { re })
    }

    /// Capture group names, group 0 first; "" for unnamed groups.
    pub fn group_names(&self) -> Vec<String> {
        self.re.group_names()
    }

    /// Indices of the events whose body has a match, ascending.
    pub fn matching(&self, batch: &Batch) -> Vec<u32> {
        let (bodies, ends) = batch.body_column();
        self.matching_column(bodies, ends)
    }

    /// [`Regex::matching`] over any column (e.g. a field's values).
    pub fn matching_column(&self, bodies: &[u8], ends: &[u32]) -> Vec<u32> {
        #[cfg(target_arch = "wasm32")]
        return self.re.matching(bodies, ends);
        #[cfg(not(target_arch = "wasm32"))]
        native(self.re.matching(bodies, ends))
    }

    /// Every non-overlapping match, by event, then by position.
    pub fn find_all(&self, batch: &Batch) -> Vec<Span> {
        let (bodies, ends) = batch.body_column();
        self.find_all_column(bodies, ends)
    }

    /// [`Regex::find_all`] over any column.
    pub fn find_all_column(&self, bodies: &[u8], ends: &[u32]) -> Vec<Span> {
        #[cfg(target_arch = "wasm32")]
        return spans(&self.re.find_all(bodies, ends));
        #[cfg(not(target_arch = "wasm32"))]
        spans(&native(self.re.find_all(bodies, ends)).into_flattened())
    }

    /// For each event with a match, the groups of its first match that took
    /// part (group 0 first).
    pub fn captures(&self, batch: &Batch) -> Vec<Capture> {
        let (bodies, ends) = batch.body_column();
        self.captures_column(bodies, ends)
    }

    /// [`Regex::captures`] over any column.
    pub fn captures_column(&self, bodies: &[u8], ends: &[u32]) -> Vec<Capture> {
        #[cfg(target_arch = "wasm32")]
        return captures(&self.re.captures(bodies, ends));
        #[cfg(not(target_arch = "wasm32"))]
        captures(&native(self.re.captures(bodies, ends)).into_flattened())
    }
}

/// The members named by `paths` (`.` descends into nested objects) of each
/// body that is a JSON object. A field's `key` indexes `paths`.
pub fn json_extract(batch: &Batch, paths: &[String]) -> JsonMembers {
    let (bodies, ends) = batch.body_column();
    json_extract_column(bodies, ends, paths)
}

/// [`json_extract`] over any column.
pub fn json_extract_column(bodies: &[u8], ends: &[u32], paths: &[String]) -> JsonMembers {
    #[cfg(target_arch = "wasm32")]
    {
        let m = crate::bindings::wit_kernels::json_extract(bodies, ends, paths);
        members(m.values, &m.fields, &m.types, m.invalid)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let m = native(gleaner_kernels::json_extract(bodies, ends, paths));
        members(m.values, &m.fields.into_flattened(), &m.types, m.invalid)
    }
}

/// In the host a badly built column traps the plugin; natively it panics
/// with the same message, which fails the test.
#[cfg(not(target_arch = "wasm32"))]
fn native<T>(r: Result<T, String>) -> T {
    r.unwrap_or_else(|e| panic!("gleaner kernels: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::batch_of_lines;

    #[test]
    fn kernels_run_natively_in_plugin_tests() {
        let batch = batch_of_lines(&["GET /a 200", "oops", r#"{"a":{"b":"x"}}"#]);
        let re = Regex::new(r"(?P<status>\d{3})").unwrap();
        assert_eq!(re.group_names(), ["", "status"]);
        assert_eq!(re.matching(&batch), [0]);
        let found = re.find_all(&batch);
        assert_eq!((found[0].event, found[0].start, found[0].len), (0, 7, 3));
        assert_eq!(re.captures(&batch).len(), 2);
        let j = json_extract(&batch, &["a.b".to_owned()]);
        assert_eq!((j.fields[0].event, j.value(&j.fields[0])), (2, &b"x"[..]));
        assert_eq!(j.fields[0].ty, crate::value::STRING);
        assert_eq!(j.invalid, [0, 1]);
        assert!(Regex::new("(").is_err());
    }
}
