//! The floor plan, checked: every `crate::` path in a top-level module
//! names its own floor or one below it, so imports only point down and no
//! two floors import each other; and no source file is over 600 lines
//! before its tests.

use std::collections::BTreeMap;
use std::path::Path;

/// The floors, lowest first.
const FLOORS: &[&[&str]] = &[
    &["telemetry", "background"],
    &["model"],
    &["plugin"],
    &["state"],
    &["data"],
    &["config"],
    &["control"],
    &["tooling"],
];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn imports_only_point_down_the_floors_and_files_stay_small() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut long = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let top = rel.split(['/', '.']).next().unwrap().to_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        let before_tests = text.split("\n#[cfg(test)]").next().unwrap();
        if before_tests.lines().count() > 600 && !rel.ends_with("_test.rs") {
            long.push(format!("{rel}: {} lines", before_tests.lines().count()));
        }
        let Some(own) = floor_of(&top) else {
            continue; // lib.rs, main.rs, this file
        };
        for (i, _) in before_tests.match_indices("crate::") {
            let name: String = before_tests[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if let Some(floor) = floor_of(&name)
                && floor > own
            {
                upward.entry(rel.clone()).or_default().push(name);
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports pointing up the floors: {upward:?}"
    );
    assert!(
        long.is_empty(),
        "files over 600 lines before their tests: {long:?}"
    );
}
