//! Plugins in any language: the masking example written with each SDK
//! (Rust, C, Python) turns the same input into byte-identical output, in
//! `gleaner plugin test` and in real pipelines; `gleaner plugin new` →
//! `build` → `test` works in each language.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::Digest as _;

use crate::common::*;

/// A command with the SDK toolchains and this gleaner in its environment.
fn with_tools(mut cmd: Command) -> Command {
    cmd.env("WASM_TOOLS", tools_dir().join("bin/wasm-tools"))
        .env(
            "COMPONENTIZE_PY",
            tools_dir().join("py/bin/componentize-py"),
        )
        .env("GLEANER", env!("CARGO_BIN_EXE_gleaner"));
    cmd
}

fn check(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Builds the C plugin in `src` (its Makefile includes `sdk/c/plugin.mk`)
/// into `out`, with intermediate files in `build`.
fn build_c(src: &Path, build: &Path, out: &Path) {
    let mut make = with_tools(Command::new("make"));
    make.arg("-C")
        .arg(src)
        .arg(format!("BUILD={}", build.display()))
        .arg(format!("OUT={}", out.display()));
    check(&mut make);
}

/// Builds the Python plugin `app.py` in `src`, with the SDK, into `out`.
fn build_python(src: &Path, out: &Path) {
    let work = out.parent().unwrap();
    check(
        Command::new(tools_dir().join("py/bin/componentize-py"))
            .current_dir(work)
            .arg("-d")
            .arg(workspace().join("wit"))
            .args(["-w", "processor", "componentize", "app", "-p"])
            .arg(src)
            .arg("-p")
            .arg(workspace().join("sdk/python"))
            .arg("-o")
            .arg(out),
    );
}

/// Builds the C and Python mask examples into `dir`; the Rust one is built
/// with the first-party plugins.
fn mask_components(dir: &Path) -> [(&'static str, PathBuf); 3] {
    let c = dir.join("mask-c.wasm");
    build_c(
        &workspace().join("examples/mask/c"),
        &dir.join("c-build"),
        &c,
    );
    let py = dir.join("mask-python.wasm");
    build_python(&workspace().join("examples/mask/python"), &py);
    [
        ("rust", plugin_wasm("example-mask")),
        ("c", c),
        ("python", py),
    ]
}

/// `gleaner plugin test` output of `component` on `input`.
fn plugin_test(component: &Path, input: &Path) -> String {
    check(
        gleaner()
            .args(["plugin", "test"])
            .arg(component)
            .arg("--input")
            .arg(input),
    )
}

/// Lines full of near misses: emails and card numbers, valid or not,
/// glued to letters, digits and punctuation (a fixed pseudo-random mix).
fn tricky_lines(n: usize) -> String {
    const PIECES: &[&str] = &[
        "bob@example.com",
        "a.b-c+d@mail.example.org",
        "x@y.z",
        "x@localhost",
        "@",
        "@@",
        "me@host.co.",
        "me@host.c0m",
        "q@w.io-",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111112",
        "5500 0000 0000 0004",
        "378282246310005",
        "6011111111111117",
        "1234",
        "12345678901234567890",
        "4111  1111 1111 1111",
        "ab4111111111111111",
        "4111111111111111x",
        "-",
        " ",
        ".",
        ",",
        "_",
        "é",
        "\t",
        "\"",
        "\\",
        "mail:",
        "card=",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut text = String::new();
    for _ in 0..n {
        let pieces = 1 + next() % 8;
        for _ in 0..pieces {
            text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            if next() % 3 == 0 {
                text.push(' ');
            }
        }
        text.push('\n');
    }
    text
}

#[test]
fn the_masking_example_is_identical_in_rust_c_and_python() {
    let env = Env::new();
    let components = mask_components(env.dir.path());
    // The documented sample, checked against its expected rendering.
    let sample = workspace().join("examples/mask/sample.log");
    let expected = std::fs::read_to_string(workspace().join("examples/mask/expected.txt")).unwrap();
    for (lang, component) in &components {
        let out = plugin_test(component, &sample);
        let rendered: String = json_lines(out.as_bytes())
            .iter()
            .map(|e| {
                format!(
                    "{} | redactions={}\n",
                    e["message"].as_str().unwrap(),
                    e["redactions"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(rendered, expected, "{lang}");
    }
    // 3,000 lines of near misses: byte-identical in all three.
    let input = env.write("tricky.log", &tricky_lines(3000));
    let outputs: Vec<String> = components
        .iter()
        .map(|(_, c)| plugin_test(c, &input))
        .collect();
    assert_eq!(outputs[0], outputs[1], "rust vs c");
    assert_eq!(outputs[0], outputs[2], "rust vs python");
    let events = json_lines(outputs[0].as_bytes());
    assert_eq!(events.len(), 3000);
    let masked: usize = events
        .iter()
        .map(|e| e["redactions"].as_str().unwrap().parse::<usize>().unwrap())
        .sum();
    let text = outputs[0].as_str();
    assert!(masked > 1000 && text.contains("[email]") && text.contains("[card]"));
    assert!(text.contains("4111111111111112") && text.contains("x@localhost"));

    // And in real pipelines, one per language, over the same file, after
    // a processor that adds a field (which the mask must keep).
    let out = env.path("out");
    let pipelines: String = components
        .iter()
        .map(|(lang, c)| {
            format!(
                "  - name: {lang}\n    inputs: [{{ type: file, paths: [\"{input}\"], start_at: beginning }}]\n    processors: [{{ plugin: builtin:parse-regex, config: {{ pattern: '^(?P<first>\\S+)' }} }}, {{ plugin: \"{c}\" }}]\n    flushers: [{{ plugin: builtin:file, config: {{ path: \"{out}/{lang}.ndjson\" }}, grants: {{ dirs: [\"{out}\"] }} }}]\n",
                input = input.display(),
                c = c.display(),
                out = out.display(),
            )
        })
        .collect();
    run_once(&env.config(&pipelines));
    let strip = |e: &serde_json::Value| (e["message"].clone(), e["redactions"].clone());
    let want: Vec<_> = events.iter().map(strip).collect();
    // What `^(?P<first>\S+)` captures of each original line.
    let text = std::fs::read_to_string(&input).unwrap();
    let firsts: Vec<Option<&str>> = text
        .lines()
        .map(|l| {
            let first = l.split(char::is_whitespace).next();
            first.filter(|f| !f.is_empty())
        })
        .collect();
    let mut whole = Vec::new();
    for (lang, _) in &components {
        let got = lines_in(&out.join(format!("{lang}.ndjson")));
        let stripped: Vec<_> = got.iter().map(strip).collect();
        assert!(
            stripped == want,
            "{lang}: {} events differ from plugin test",
            got.len()
        );
        for (e, first) in got.iter().zip(&firsts) {
            assert_eq!(e["first"].as_str(), *first, "{lang}: {e}");
        }
        // Everything but the read time (each pipeline reads on its own).
        whole.push(got.into_iter().map(|mut e| {
            e.as_object_mut().unwrap().remove("timestamp");
            e
        }));
    }
    let whole: Vec<Vec<serde_json::Value>> = whole.into_iter().map(Iterator::collect).collect();
    for (lang, events) in [("c", &whole[1]), ("python", &whole[2])] {
        let first_diff = whole[0].iter().zip(events).position(|(a, b)| a != b);
        assert_eq!(
            first_diff, None,
            "rust vs {lang}: the first event that differs"
        );
    }
    mask_throughput(&env, &components);
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn plugin_new_build_and_test_in_every_language() {
    let env = Env::new();
    // Rust projects share a target dir across runs (the first build
    // compiles the SDK's dependencies for wasm32-wasip2).
    let target = workspace().join("target/scaffold");
    for (lang, kind) in [
        ("rust", "processor"),
        ("rust", "flusher"),
        ("c", "processor"),
        ("python", "processor"),
        ("c", "flusher"),
        ("python", "flusher"),
    ] {
        let t0 = Instant::now();
        let name = format!("hello-{lang}-{kind}");
        let dir = PathBuf::from(
            check(
                gleaner()
                    .args([
                        "plugin", "new", &name, "--lang", lang, "--kind", kind, "--dir",
                    ])
                    .arg(env.dir.path()),
            )
            .trim(),
        );
        assert_eq!(dir, env.path(&name));
        if lang == "rust" {
            // The SDK is vendored: nothing points into this checkout.
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            assert!(
                manifest.contains(r#"gleaner-sdk = { path = "vendor/gleaner-sdk" }"#),
                "{manifest}"
            );
            let checkout = workspace().display().to_string();
            for f in walk(&dir) {
                let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
                assert!(
                    !text.contains(&checkout),
                    "{} names the checkout",
                    f.display()
                );
            }
        }
        // No WASM_TOOLS or COMPONENTIZE_PY: `plugin build` finds them in
        // the tools cache where scripts/setup.sh put them.
        let mut build = gleaner();
        build
            .env_remove("WASM_TOOLS")
            .env_remove("COMPONENTIZE_PY")
            .env("CARGO_TARGET_DIR", &target)
            .args(["plugin", "build"])
            .arg(&dir);
        let component = PathBuf::from(check(&mut build).trim());
        assert_eq!(component, dir.join("plugin.wasm"));
        let mut test = gleaner();
        test.current_dir(&dir)
            .args(["plugin", "test", "plugin.wasm", "--input", "sample.log"]);
        if kind == "processor" {
            test.args(["--expect", "expected.ndjson"]);
        }
        let out = test.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        if kind == "processor" {
            assert!(
                stderr.contains("output matches expected.ndjson"),
                "{stderr}"
            );
            let events = json_lines(&out.stdout);
            assert_eq!(events.len(), 2);
            assert_eq!(events[1]["greeting"], "hello");
            assert_eq!(events[1]["message"], "second line with a \"quote\"");
        } else {
            assert!(
                stderr.contains("flusher 2 lines in, 2 events flushed"),
                "{stderr}"
            );
            assert!(stderr.contains(r#"counters {"events": 2}"#), "{stderr}");
        }
        eprintln!(
            "{name}: new → build → test in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
    }
    // Without the toolchain anywhere: how to install it.
    let out = gleaner()
        .env_remove("COMPONENTIZE_PY")
        .env("GLEANER_TOOLS", env.path("no-tools"))
        .env("PATH", "/usr/bin:/bin")
        .args(["plugin", "build"])
        .arg(env.path("hello-python-flusher"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("componentize-py not found")
            && stderr.contains("pip install componentize-py==0.25.1")
            && stderr.contains("set COMPONENTIZE_PY"),
        "{stderr}"
    );
    // The Rust project's own native test passes too.
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(env.path("hello-rust-processor"))
        .env("CARGO_TARGET_DIR", &target)
        .args(["test", "--release", "--quiet"]);
    check(&mut cargo);
    // A C plugin that fails without a message still reports one (the
    // generated glue leaves the error uninitialised; the SDK clears it).
    let c = env.path("hello-c-processor");
    let src = std::fs::read_to_string(c.join("plugin.c")).unwrap();
    let failing = src.replace(
        "bool gleaner_process(const gl_batch *in, gl_builder *out, gl_error *err) {",
        "bool gleaner_process(const gl_batch *in, gl_builder *out, gl_error *err) {\n    if (gl_len(in) > 0) return false;",
    );
    assert_ne!(failing, src);
    std::fs::write(c.join("plugin.c"), failing).unwrap();
    let mut build = with_tools(gleaner());
    check(build.args(["plugin", "build"]).arg(&c));
    let out = gleaner()
        .current_dir(&c)
        .args(["plugin", "test", "plugin.wasm", "--input", "sample.log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("process: plugin failed: the plugin failed without a message"),
        "{stderr}"
    );
    std::fs::write(c.join("plugin.c"), src).unwrap();
    check(with_tools(gleaner()).args(["plugin", "build"]).arg(&c));
    // A wrong config is refused with the plugin's message.
    let out = gleaner()
        .current_dir(env.path("hello-c-processor"))
        .args([
            "plugin",
            "test",
            "plugin.wasm",
            "--input",
            "sample.log",
            "--config",
            "{greeting: 7}",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("greeting: must be a string"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Log lines as a web service writes them, some with an email or a card
/// number in them (1 in 10 and 1 in 20).
fn bench_lines(bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 256);
    let mut i = 0u64;
    while text.len() < bytes {
        i += 1;
        let user = match i % 10 {
            0 => format!("user=u{i}@shop.example.com"),
            _ => format!("user=u{i}"),
        };
        let pay = match i % 20 {
            7 => " card=4111 1111 1111 1111",
            13 => " order=1234567890123456",
            _ => "",
        };
        text.push_str(&format!(
            "10.0.{}.{} - - [22/Nov/2026:03:{:02}:{:02} +0000] \"GET /api/v1/orders/{i}?{user} HTTP/1.1\" 200 {}{pay} \"Mozilla/5.0 (X11; Linux x86_64)\"\n",
            i % 256,
            (i / 256) % 256,
            (i / 60) % 60,
            i % 60,
            512 + i % 4096,
        ));
    }
    text
}

/// Throughput of each language's masking processor (time inside plugin
/// calls, batches of 1,024 lines, as `gleaner plugin test` measures it),
/// next to the same Rust code run natively in this process. Printed, not
/// asserted; `GLEANER_MASK_MIB` sizes the input (docs/benchmarks.md).
fn mask_throughput(env: &Env, components: &[(&'static str, PathBuf)]) {
    use gleaner_sdk::Processor;
    let mib = knob("GLEANER_MASK_MIB", 2);
    let text = bench_lines(mib << 20);
    let input = env.write("bench.log", &text);
    let lines: Vec<&str> = text.lines().collect();
    let mut native = example_mask::Mask::init("{}").unwrap();
    let mut native_time = std::time::Duration::ZERO;
    let mut native_events = 0;
    for chunk in lines.chunks(1024) {
        let batch = gleaner_sdk::testing::batch_of_lines(chunk);
        let t0 = Instant::now();
        native_events += native.process(batch).unwrap().len();
        native_time += t0.elapsed();
    }
    assert_eq!(native_events, lines.len());
    let mbs = |secs: f64| text.len() as f64 / secs / 1e6;
    let native_mbs = mbs(native_time.as_secs_f64());
    eprintln!(
        "mask, {:.1} MiB, {} lines: native Rust {native_mbs:.0} MB/s",
        text.len() as f64 / (1 << 20) as f64,
        lines.len()
    );
    let mut rust_mbs = None;
    for (lang, component) in components {
        let out = gleaner()
            .args(["plugin", "test"])
            .arg(component)
            .arg("--input")
            .arg(&input)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let ms: f64 = stderr
            .lines()
            .find_map(|l| {
                l.split(", ")
                    .find_map(|p| p.strip_suffix(" ms in plugin calls"))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no call time in {stderr}"));
        let m = mbs(ms / 1e3);
        let vs_rust = *rust_mbs.get_or_insert(m);
        eprintln!(
            "  {lang:>6}: {m:.0} MB/s in plugin calls, {:.2}x native, {:.2}x the Rust plugin, {:.0} k lines/s",
            m / native_mbs,
            m / vs_rust,
            lines.len() as f64 / (ms / 1e3) / 1e3
        );
    }
    pipeline_throughput(env, &input, lines.len() as u64, components);
}

/// The same input end to end, as `gleaner bench` measures it: file → mask
/// processor → file flusher per language (wall time, CPU, peak RSS of the
/// agent), next to the native read-and-write baseline (`bench-native
/// --mode raw`, no masking). Every run must write one event per line.
fn pipeline_throughput(env: &Env, input: &Path, lines: u64, components: &[(&str, PathBuf)]) {
    let bytes = std::fs::metadata(input).unwrap().len() as f64;
    let out = env.path("bench-out");
    std::fs::create_dir_all(&out).unwrap();
    // Measured by `gleaner measure`: this test process is large, and its
    // memory would show in a direct child's peak RSS.
    let report = |name: &str, args: &[&std::ffi::OsStr], output: &Path| {
        let mut measure = gleaner();
        measure
            .args(["measure", env!("CARGO_BIN_EXE_gleaner")])
            .args(args)
            .env("GLEANER_LOG", "warn");
        let u: serde_json::Value = serde_json::from_str(&check(&mut measure)).unwrap();
        let (wall, cpu) = (u["wall"].as_f64().unwrap(), u["cpu"].as_f64().unwrap());
        let rss_mib = u["max_rss_kib"].as_f64().unwrap() / 1024.0;
        let written = std::fs::read(output).unwrap();
        assert_eq!(
            written.iter().filter(|&&b| b == b'\n').count() as u64,
            lines,
            "{name}"
        );
        std::fs::remove_file(output).unwrap();
        eprintln!(
            "  {name:>17}: {:.0} MB/s, {:.0} k events/s, {:.1} CPU s/GB, peak RSS {rss_mib:.0} MiB",
            bytes / 1e6 / wall,
            lines as f64 / wall / 1e3,
            cpu / (bytes / 1e9),
        );
    };
    eprintln!("end to end (file -> processor -> file):");
    let raw = out.join("native.ndjson");
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    report(
        "native read+write",
        &[
            os("bench-native"),
            os("--mode"),
            os("raw"),
            os("--input"),
            input.as_os_str(),
            os("--output"),
            raw.as_os_str(),
        ],
        &raw,
    );
    for (lang, component) in components {
        let output = out.join(format!("{lang}.ndjson"));
        let config = env.config(&format!(
            r#"
  - name: mask-{lang}
    inputs: [{{ type: file, paths: ["{input}"], start_at: beginning }}]
    processors: [{{ plugin: "{component}" }}]
    flushers: [{{ plugin: builtin:file, config: {{ path: "{output}", max_bytes: 100000000000 }}, grants: {{ dirs: ["{out}"] }} }}]
"#,
            input = input.display(),
            component = component.display(),
            output = output.display(),
            out = out.display()
        ));
        // Compiled once, outside the measurement (the cache is on disk).
        check(gleaner().args(["validate", "--config"]).arg(&config));
        let _ = std::fs::remove_dir_all(env.path("state"));
        report(
            &format!("{lang} mask"),
            &[
                os("run"),
                os("--exit-on-eof"),
                os("--config"),
                config.as_os_str(),
            ],
            &output,
        );
    }
}

/// A plugin built against the frozen `gleaner:plugin@0.1.0`
/// (`wit/deps/plugin-0.1.0`, fixture `plugins/test-wit-0-1-0`) still
/// loads and runs: in `gleaner plugin test` (its 0.1.0 counter and log
/// imports reach the host) and in a real pipeline after a current plugin.
#[test]
fn a_plugin_built_against_wit_0_1_0_still_runs() {
    let fixture = plugin_wasm("test-wit-0-1-0");
    // It really is a 0.1.0 component: it imports the 0.1.0 host interface.
    let wasm = std::fs::read(&fixture).unwrap();
    let has = |s: &str| wasm.windows(s.len()).any(|w| w == s.as_bytes());
    assert!(has("gleaner:plugin/host@0.1.0"));
    assert!(!has("gleaner:plugin/host@0.2.0"));

    let env = Env::new();
    let lines: Vec<String> = (0..300)
        .map(|i| format!("line {i} status={}", 200 + i % 5))
        .collect();
    let input = env.write("in.log", &(lines.join("\n") + "\n"));
    let out = gleaner()
        .args(["plugin", "test"])
        .arg(&fixture)
        .arg("--input")
        .arg(&input)
        .args(["--batch", "64"])
        .env("GLEANER_LOG", "debug")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(r#"counters {"events": 300}"#), "{stderr}");
    assert_eq!(stderr.matches("0.1.0 fixture: ").count(), 5, "{stderr}");
    let events = json_lines(&out.stdout);
    assert_eq!(events.len(), 300);
    for (e, line) in events.iter().zip(&lines) {
        assert_eq!(e["message"], line.as_str());
        assert_eq!(e["wit"], "0.1.0");
    }

    // In a pipeline, between 0.2.0 plugins: fields from before are kept.
    let sink = env.path("out");
    std::fs::create_dir_all(&sink).unwrap();
    let config = env.config(&format!(
        r#"
  - name: p
    inputs: [{{ type: file, paths: ["{log}"], start_at: beginning }}]
    processors:
      - plugin: builtin:parse-regex
        config: {{ pattern: 'status=(?P<status>\d+)' }}
      - plugin: {fixture}
    flushers: [{{ plugin: builtin:file, config: {{ path: "{sink}/events.ndjson" }}, grants: {{ dirs: ["{sink}"] }} }}]
"#,
        log = input.display(),
        fixture = fixture.display(),
        sink = sink.display()
    ));
    run_once(&config);
    let events = lines_in(&sink.join("events.ndjson"));
    assert_eq!(events.len(), 300);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["message"], lines[i].as_str());
        assert_eq!(e["status"], (200 + i % 5).to_string());
        assert_eq!(e["wit"], "0.1.0");
    }
}

/// Every host kernel through the C and the Python SDK
/// (`tests/e2e/kernels_probe`): both plugins turn the results into
/// fields, which must be exactly the host's answers, the same in both.
#[test]
fn kernels_from_c_and_python_give_the_host_answers() {
    let env = Env::new();
    let probe = workspace().join("runtime/tests/e2e/kernels_probe");
    let c = env.path("probe-c.wasm");
    build_c(&probe, &env.path("c-build"), &c);
    let py = env.path("probe-python.wasm");
    build_python(&probe, &py);
    let input = env.write(
        "in.log",
        concat!(
            "a=1 b=22\n",
            "{\"level\":\"warn\",\"http\":{\"status\":503},\"msg\":\"x=\\\"q\\\"\"}\n",
            "none\n",
            "x=5 {\"a\":1}\n",
            "{\"level\":\"a \\u00e9 \\\"b\\\"\"}\n",
        ),
    );
    let expected = [
        r#"{"matching":"yes","find_all":"a=1,b=22","captures":"0:a=1,k:a,v:1","invalid":"yes"}"#,
        r#"{"json":"level=warn,http.status=503","types":"0,1"}"#,
        r#"{"invalid":"yes"}"#,
        r#"{"matching":"yes","find_all":"x=5","captures":"0:x=5,k:x,v:5","invalid":"yes"}"#,
        r#"{"json":"level=a é \"b\"","types":"0"}"#,
    ];
    let bodies: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    for component in [&c, &py] {
        let events = json_lines(plugin_test(component, &input).as_bytes());
        assert_eq!(events.len(), expected.len());
        for ((e, want), body) in events.iter().zip(expected).zip(&bodies) {
            let mut got = e.as_object().unwrap().clone();
            for k in ["message", "timestamp", "source.path"] {
                got.remove(k);
            }
            let mut want: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(want).unwrap();
            // The body's length, typed; what the host's zstd makes of it.
            want.insert("len".into(), body.len().into());
            let zstd = zstd::bulk::compress(body.as_bytes(), 1).unwrap().len();
            want.insert("zstd".into(), zstd.to_string().into());
            let sha: String = sha2::Sha256::digest(body.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            want.insert("sha256".into(), sha.into());
            assert_eq!(got, want, "{}: {}", component.display(), e["message"]);
        }
    }
}
