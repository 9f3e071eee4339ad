//! Generated bindings for the two worlds of `wit/plugin.wit`. Nothing else in
//! the SDK names generated items except through the conversions in
//! `batch.rs`, `host.rs` and the export macros in `lib.rs`.

/// Bindings of the `processor` world.
pub mod processor {
    wit_bindgen::generate!({
        world: "processor",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_processor_world",
        default_bindings_module: "gleaner_sdk::bindings::processor",
        runtime_path: "gleaner_sdk::__private::wit_bindgen::rt",
    });
}

/// Bindings of the `flusher` world.
pub mod flusher {
    wit_bindgen::generate!({
        world: "flusher",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_flusher_world",
        default_bindings_module: "gleaner_sdk::bindings::flusher",
        runtime_path: "gleaner_sdk::__private::wit_bindgen::rt",
        with: {
            "gleaner:plugin/types@0.1.0": crate::bindings::processor::gleaner::plugin::types,
            "gleaner:plugin/host@0.1.0": crate::bindings::processor::gleaner::plugin::host,
        },
    });
}

pub use processor::gleaner::plugin::host as wit_host;
pub use processor::gleaner::plugin::types as wit;
