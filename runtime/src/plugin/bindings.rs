//! The one place that runs `bindgen!` over `wit/`. Generated types do not
//! leave `plugin/`: `convert.rs` maps them to and from `event::Batch`.
//!
//! The current package (`wit/plugin.wit`) gives the worlds the host
//! instantiates. Each frozen earlier version (`wit/deps/plugin-X.Y.Z`)
//! gets the bindings its plugins need: 0.2.0 plugins export a batch of
//! another shape, so both its worlds are bound and instantiated as such
//! (`compat.rs` maps their imports, `convert.rs` their batches); 0.1.0
//! plugins export the same shapes as 0.2.0 ones, and 0.3.0 plugins the
//! same as 0.4.0 ones (component types are structural), so only their
//! imports are bound. `gleaner:tls` is a package of its own, versioned
//! apart, that flushers may import whatever their `gleaner:plugin`.

/// Bindings of the `processor` world.
pub mod processor {
    wasmtime::component::bindgen!({
        world: "gleaner:plugin/processor@0.4.0",
        path: "../wit",
        imports: { "gleaner:plugin/kernels@0.4.0": trappable },
        with: {
            "gleaner:plugin/kernels.regex": gleaner_kernels::CompiledRegex,
        },
    });
}

/// Bindings of the `flusher` world; shares the interfaces of `processor`.
pub mod flusher {
    wasmtime::component::bindgen!({
        world: "gleaner:plugin/flusher@0.4.0",
        path: "../wit",
        with: {
            "gleaner:plugin/types@0.4.0": super::processor::gleaner::plugin0_4_0::types,
            "gleaner:plugin/host@0.4.0": super::processor::gleaner::plugin0_4_0::host,
            "gleaner:plugin/kernels@0.4.0": super::processor::gleaner::plugin0_4_0::kernels,
        },
    });
}

/// `gleaner:tls@0.1.0`: TLS connections the host makes for flushers,
/// linked beside whichever `gleaner:plugin` world a flusher exports.
pub mod tls {
    wasmtime::component::bindgen!({
        world: "gleaner:tls/tls-client@0.1.0",
        path: "../wit",
        imports: { default: trappable },
        with: {
            "gleaner:tls/client.connection": crate::plugin::tls_client::TlsConnection,
        },
    });

    pub use self::gleaner::tls::client;
}

/// Imports of `gleaner:plugin@0.3.0`: its plugins export the same shapes
/// as 0.4.0 ones (0.4.0 only added to the host interface: the `snappy`
/// codec and `hash`).
pub mod v0_3 {
    wasmtime::component::bindgen!({
        world: "gleaner:plugin/processor@0.3.0",
        path: "../wit",
        imports: { "gleaner:plugin/kernels@0.3.0": trappable },
        with: {
            "gleaner:plugin/kernels.regex": gleaner_kernels::CompiledRegex,
        },
    });

    pub use self::gleaner::plugin0_3_0::{host, kernels, types};
}

/// Both worlds of `gleaner:plugin@0.2.0` (and the exports of 0.1.0).
pub mod v0_2 {
    /// The 0.2.0 `processor` world.
    pub mod processor {
        wasmtime::component::bindgen!({
            world: "gleaner:plugin/processor@0.2.0",
            path: "../wit",
            imports: { "gleaner:plugin/kernels@0.2.0": trappable },
            with: {
                "gleaner:plugin/kernels.regex": gleaner_kernels::CompiledRegex,
            },
        });
    }

    /// The 0.2.0 `flusher` world.
    pub mod flusher {
        wasmtime::component::bindgen!({
            world: "gleaner:plugin/flusher@0.2.0",
            path: "../wit",
            with: {
                "gleaner:plugin/types@0.2.0": super::processor::gleaner::plugin0_2_0::types,
                "gleaner:plugin/host@0.2.0": super::processor::gleaner::plugin0_2_0::host,
                "gleaner:plugin/kernels@0.2.0": super::processor::gleaner::plugin0_2_0::kernels,
            },
        });
    }

    pub use processor::gleaner::plugin0_2_0::{host, kernels, types};
}

/// Imports of `gleaner:plugin@0.1.0` (both worlds import the same).
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "gleaner:plugin/processor@0.1.0",
        path: "../wit",
    });
}

pub use processor::gleaner::plugin0_4_0::host as wit_host;
pub use processor::gleaner::plugin0_4_0::kernels;
pub use processor::gleaner::plugin0_4_0::types as wit;
