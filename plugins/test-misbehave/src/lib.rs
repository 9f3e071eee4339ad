//! Test fixture, not a builtin: a processor that misbehaves when an event
//! body contains a trigger word, so the runtime's fault handling can be
//! tested with a real component.
//!
//! Config (all optional): `panic_on`, `spin_on` (loops forever), `hog_on`
//! (allocates until memory runs out), `fail_on` (returns an error),
//! `refuse_init` (init fails with this message), `probe_file` (tries to
//! read a host file, reports the outcome in `fs_probe`), `bad_column_on`
//! (calls a host kernel with a column whose ends are out of order),
//! `regexes_on` (compiles host regexes until the host refuses one and
//! returns its message as the error), `stderr_on` (writes `stderr_lines`
//! forged agent log lines to its stderr, then goes on). Other batches pass
//! unchanged with a field `seen_by = misbehave`.

use gleaner_sdk::{Batch, Processor};

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    panic_on: Option<String>,
    spin_on: Option<String>,
    hog_on: Option<String>,
    fail_on: Option<String>,
    refuse_init: Option<String>,
    /// Try to read this host file in every batch and report the outcome in
    /// the field `fs_probe` (the sandbox must deny it).
    probe_file: Option<String>,
    bad_column_on: Option<String>,
    regexes_on: Option<String>,
    stderr_on: Option<String>,
    #[serde(default)]
    stderr_lines: u32,
}

struct Misbehave(Config);

fn has(batch: &Batch, word: &Option<String>) -> bool {
    word.as_ref()
        .is_some_and(|w| batch.events().any(|e| e.body_str().contains(w.as_str())))
}

impl Processor for Misbehave {
    fn init(config: &str) -> Result<Self, String> {
        let c: Config = gleaner_sdk::parse_config(config)?;
        if let Some(m) = &c.refuse_init {
            return Err(m.clone());
        }
        gleaner_sdk::host::info("misbehave ready");
        Ok(Misbehave(c))
    }

    fn process(&mut self, input: Batch) -> Result<Batch, String> {
        if has(&input, &self.0.panic_on) {
            panic!("misbehave: panic requested");
        }
        if has(&input, &self.0.spin_on) {
            let mut x: u64 = 1;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        if has(&input, &self.0.hog_on) {
            let mut hog: Vec<Vec<u8>> = Vec::new();
            loop {
                hog.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hog);
            }
        }
        if has(&input, &self.0.bad_column_on) {
            let re = gleaner_sdk::kernels::Regex::new("x")?;
            re.find_all_column(b"abc", &[2, 1]);
        }
        if has(&input, &self.0.regexes_on) {
            let mut held = Vec::new();
            loop {
                held.push(gleaner_sdk::kernels::Regex::new("x")?);
            }
        }
        if has(&input, &self.0.stderr_on) {
            use std::io::Write;
            let mut err = std::io::stderr();
            for i in 0..self.0.stderr_lines {
                // A forged agent log line, with a terminal escape.
                let _ = writeln!(
                    err,
                    "2026-01-01T00:00:00Z ERROR gleaner::pipeline: \x1b[31mforged {i}\x1b[0m pipeline=B"
                );
            }
        }
        if has(&input, &self.0.fail_on) {
            return Err("misbehave: failure requested".into());
        }
        let probe = self.0.probe_file.as_ref().map(|p| match std::fs::read(p) {
            Ok(bytes) => format!("read {} bytes", bytes.len()),
            Err(e) => format!("denied: {e}"),
        });
        let mut out = input.builder();
        for e in input.events() {
            let mut e = out.push_copy(&e);
            e.field("seen_by", "misbehave");
            if let Some(p) = &probe {
                e.field("fs_probe", p);
            }
        }
        Ok(out.finish())
    }
}

gleaner_sdk::export_processor!(Misbehave);
