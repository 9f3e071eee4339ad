//! The one place that runs `bindgen!` over `wit/plugin.wit`. Generated types
//! do not leave `plugin/`: `convert.rs` maps them to and from `event::Batch`.

/// Bindings of the `processor` world.
pub mod processor {
    wasmtime::component::bindgen!({
        world: "processor",
        path: "../wit",
    });
}

/// Bindings of the `flusher` world; shares the interfaces of `processor`.
pub mod flusher {
    wasmtime::component::bindgen!({
        world: "flusher",
        path: "../wit",
        with: {
            "gleaner:plugin/types": super::processor::gleaner::plugin::types,
            "gleaner:plugin/host": super::processor::gleaner::plugin::host,
        },
    });
}

pub use processor::gleaner::plugin::host as wit_host;
pub use processor::gleaner::plugin::types as wit;
