//! The files `gleaner plugin new` writes, per language and kind. Each
//! language's SDK and the WIT are copied into each project (embedded in
//! the binary; Rust's through `vendor`), so a project builds wherever it
//! is moved, with only its language's toolchain.

use std::path::Path;

use crate::plugin::bundle::ManifestKind;

/// A plugin's language.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Rust, with `sdk/rust` (cargo, the wasm32-wasip2 target).
    Rust,
    /// C, with `sdk/c` (clang, lld, wasi-libc, wasm-tools).
    C,
    /// Python, with `sdk/python` (componentize-py).
    Python,
}

const WIT: &str = include_str!("../../../../wit/plugin.wit");
const C_HEADER: &str = include_str!("../../../../sdk/c/gleaner.h");
const C_LIB: &str = include_str!("../../../../sdk/c/gleaner.c");
const C_MK: &str = include_str!("../../../../sdk/c/plugin.mk");
const C_PROCESSOR_C: &str = include_str!("../../../../sdk/c/gen/processor.c");
const C_PROCESSOR_H: &str = include_str!("../../../../sdk/c/gen/processor.h");
const C_PROCESSOR_O: &[u8] = include_bytes!("../../../../sdk/c/gen/processor_component_type.o");
const C_FLUSHER_C: &str = include_str!("../../../../sdk/c/gen/flusher.c");
const C_FLUSHER_H: &str = include_str!("../../../../sdk/c/gen/flusher.h");
const C_FLUSHER_O: &[u8] = include_bytes!("../../../../sdk/c/gen/flusher_component_type.o");
const PY_SDK: &str = include_str!("../../../../sdk/python/gleaner_sdk.py");
const SAMPLE: &str = include_str!("templates/sample.log");

/// The sample's expected output from the template processor (every
/// language's), as `gleaner plugin test` prints it.
fn expected() -> String {
    SAMPLE
        .lines()
        .map(|l| {
            let mut body = Vec::new();
            gleaner_sdk::json::write_string(l.as_bytes(), &mut body);
            format!(
                "{{\"timestamp\":\"1970-01-01T00:00:00.000000000Z\",\"source.path\":\"sample.log\",\"greeting\":\"hello\",\"message\":{}}}\n",
                String::from_utf8_lossy(&body)
            )
        })
        .collect()
}

/// (path in the project, contents) of a new project.
pub fn files(
    lang: Lang,
    kind: ManifestKind,
    name: &str,
    rust_sdk: Option<&Path>,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let fill = |t: &str| t.replace("{{name}}", name);
    let world = match kind {
        ManifestKind::Processor => "processor",
        ManifestKind::Flusher => "flusher",
    };
    let project = format!(
        "name: {name}\nlang: {}\nkind: {world}\n",
        match lang {
            Lang::Rust => "rust",
            Lang::C => "c",
            Lang::Python => "python",
        }
    );
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (super::PROJECT_FILE.into(), project.into_bytes()),
        ("sample.log".into(), SAMPLE.into()),
        (
            ".gitignore".into(),
            b"/target\n/build\n/plugin.wasm\n/__pycache__\n".to_vec(),
        ),
    ];
    let processor = kind == ManifestKind::Processor;
    if processor {
        files.push(("expected.ndjson".into(), expected().into_bytes()));
    }
    let test_cmd = if processor {
        "gleaner plugin test plugin.wasm --input sample.log --expect expected.ndjson"
    } else {
        "gleaner plugin test plugin.wasm --input sample.log"
    };
    match lang {
        Lang::Rust => {
            let sdk = match rust_sdk {
                Some(sdk) => sdk.display().to_string(),
                None => {
                    files.extend(super::vendor::files());
                    "vendor/gleaner-sdk".to_owned()
                }
            };
            let cargo = include_str!("templates/Cargo.toml.in")
                .replace("{{name}}", name)
                .replace("{{sdk}}", &sdk);
            files.push(("Cargo.toml".into(), cargo.into_bytes()));
            let src = if processor {
                include_str!("templates/rust_processor.rs")
            } else {
                include_str!("templates/rust_flusher.rs")
            };
            files.push(("src/lib.rs".into(), fill(src).into_bytes()));
            files.push((
                "README.md".into(),
                readme(
                    name,
                    "Rust",
                    "cargo test   # the plugin's own tests, natively\ngleaner plugin build",
                    test_cmd,
                ),
            ));
        }
        Lang::C => {
            let src = if processor {
                include_str!("templates/c_processor.c")
            } else {
                include_str!("templates/c_flusher.c")
            };
            files.push(("plugin.c".into(), fill(src).into_bytes()));
            let expect = if processor {
                "--expect expected.ndjson"
            } else {
                ""
            };
            let mk = include_str!("templates/Makefile.in")
                .replace("{{name}}", name)
                .replace("{{world}}", world)
                .replace("{{expect}}", expect);
            files.push(("Makefile".into(), mk.into_bytes()));
            files.push(("sdk/gleaner.h".into(), C_HEADER.into()));
            files.push(("sdk/gleaner.c".into(), C_LIB.into()));
            files.push(("sdk/plugin.mk".into(), C_MK.into()));
            let (c, h, o) = if processor {
                (C_PROCESSOR_C, C_PROCESSOR_H, C_PROCESSOR_O)
            } else {
                (C_FLUSHER_C, C_FLUSHER_H, C_FLUSHER_O)
            };
            files.push((format!("sdk/gen/{world}.c"), c.into()));
            files.push((format!("sdk/gen/{world}.h"), h.into()));
            files.push((format!("sdk/gen/{world}_component_type.o"), o.to_vec()));
            files.push((
                "README.md".into(),
                readme(
                    name,
                    "C",
                    "make         # or: gleaner plugin build",
                    "make test",
                ),
            ));
        }
        Lang::Python => {
            let src = if processor {
                include_str!("templates/python_processor.py")
            } else {
                include_str!("templates/python_flusher.py")
            };
            files.push(("app.py".into(), fill(src).into_bytes()));
            files.push(("gleaner_sdk.py".into(), PY_SDK.into()));
            files.push(("wit/plugin.wit".into(), WIT.into()));
            files.push((
                "README.md".into(),
                readme(
                    name,
                    "Python",
                    "gleaner plugin build   # componentize-py",
                    test_cmd,
                ),
            ));
        }
    }
    Ok(files)
}

fn readme(name: &str, lang: &str, build: &str, test: &str) -> Vec<u8> {
    format!(
        "# {name}\n\nA Gleaner plugin in {lang}, made by `gleaner plugin new`.\n\n```sh\n{build}\n{test}\n```\n\n\
         Use it in a pipeline with `plugin: path/to/{name}/plugin.wasm`, or pack it\n\
         as a bundle: `gleaner plugin pack plugin.wasm --name {name} --version 0.1.0 --kind ... --out PLUGINS_DIR`.\n\
         The contract, limits and grants: Gleaner's docs/plugins.md.\n"
    )
    .into_bytes()
}
