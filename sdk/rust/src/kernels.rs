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
pub use crate::bindings::wit_kernels::{Capture, JsonMembers, Span};

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
        return self.re.find_all(bodies, ends);
        #[cfg(not(target_arch = "wasm32"))]
        native(self.re.find_all(bodies, ends))
            .into_iter()
            .map(|[event, start, len]| Span { event, start, len })
            .collect()
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
        return self.re.captures(bodies, ends);
        #[cfg(not(target_arch = "wasm32"))]
        native(self.re.captures(bodies, ends))
            .into_iter()
            .map(|[event, group, start, len]| Capture {
                event,
                group,
                start,
                len,
            })
            .collect()
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
    return crate::bindings::wit_kernels::json_extract(bodies, ends, paths);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let gleaner_kernels::JsonMembers {
            values,
            fields,
            invalid,
        } = native(gleaner_kernels::json_extract(bodies, ends, paths));
        JsonMembers {
            values,
            fields: fields
                .into_iter()
                .map(|[event, key, start, len]| crate::bindings::wit::Field {
                    event,
                    key,
                    start,
                    len,
                })
                .collect(),
            invalid,
        }
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
        assert_eq!((j.fields[0].event, &j.values[..]), (2, &b"x"[..]));
        assert_eq!(j.invalid, [0, 1]);
        assert!(Regex::new("(").is_err());
    }
}
