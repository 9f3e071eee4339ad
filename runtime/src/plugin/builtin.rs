//! First-party plugins embedded in the binary, so `builtin:NAME` works with
//! nothing else installed. The components are built from `plugins/` by
//! `build.rs` (see `docs/plugins.md`).

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The component bytes of builtin plugin `name`, if there is one.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Names of all builtin plugins.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUILTINS.iter().map(|(n, _)| *n)
}
