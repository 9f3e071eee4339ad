//! Native test helpers: run a plugin's logic on sample lines without Wasm.
//!
//! ```
//! use gleaner_sdk::testing::{batch_of_lines, records};
//! let batch = batch_of_lines(&["a", "b"]);
//! assert_eq!(records(&batch)[1].body, "b");
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::batch::{Batch, BatchBuilder};

/// A batch with one event per line (timestamp = line index), tagged
/// `source.path = "test.log"`.
pub fn batch_of_lines(lines: &[&str]) -> Batch {
    let mut b = BatchBuilder::new();
    b.set_tag("source.path", "test.log");
    for (i, line) in lines.iter().enumerate() {
        b.push(i as i64, line.as_bytes());
    }
    b.finish()
}

/// An event in an easy-to-compare shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The body as text.
    pub body: String,
    /// The fields (for a key set twice, the last value).
    pub fields: BTreeMap<String, String>,
}

/// The events of `batch` as [`Record`]s.
pub fn records(batch: &Batch) -> Vec<Record> {
    batch
        .events()
        .map(|e| Record {
            body: e.body_str().into_owned(),
            fields: e
                .fields()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
        .collect()
}

thread_local! {
    static COUNTERS: RefCell<BTreeMap<String, u64>> = const { RefCell::new(BTreeMap::new()) };
}

#[cfg_attr(
    target_arch = "wasm32",
    expect(dead_code, reason = "inside a component, counters go to the host")
)]
pub(crate) fn record_counter(name: &str, delta: u64) {
    COUNTERS.with(|c| *c.borrow_mut().entry(name.to_owned()).or_default() += delta);
}

/// The counters this thread's plugin code added in native tests.
pub fn counters() -> BTreeMap<String, u64> {
    COUNTERS.with(|c| c.borrow().clone())
}
