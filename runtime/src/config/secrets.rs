//! `${…}` in config values: `${NAME}` and `${NAME:-default}` from the
//! environment, `${file:/path}` from a file (a mounted Kubernetes Secret;
//! its trailing newline trimmed), `$${` for a literal `${`. Resolved over
//! the parsed YAML tree, so every string value may use it (never keys) and
//! an error names the key. Every value resolved is remembered, and
//! [`redact`] hides them in anything written out: the agent's log, error
//! messages and command output never show a resolved secret.
//!
//! Owns the substitution and the set of values to hide; knows nothing of
//! what the config means.

use std::sync::{PoisonError, RwLock};

use serde_yaml_ng::Value;

/// Values resolved from `${…}` so far (this process), to hide wherever text
/// is written out.
static RESOLVED: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Shorter resolved values are not hidden: they would blank out common
/// words (`info`, `true`) in unrelated text.
const MIN_HIDDEN: usize = 6;

/// What replaces a resolved value in output.
pub const HIDDEN: &str = "<redacted>";

/// Why a `${…}` could not be resolved: the key path and the message.
pub type Unresolved = (String, String);

/// Resolves every `${…}` in the string values of `value`; `path` is the
/// key path of `value` (empty at the root).
pub fn resolve(value: &mut Value, path: &str) -> Result<(), Unresolved> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = expand(s).map_err(|message| (display_path(path), message))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                resolve(item, &format!("{path}[{i}]"))?;
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = match k {
                    Value::String(k) => k.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                let child = if path.is_empty() {
                    key
                } else {
                    format!("{path}.{key}")
                };
                resolve(v, &child)?;
            }
        }
        Value::Tagged(t) => resolve(&mut t.value, path)?,
        _ => {}
    }
    Ok(())
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "(root)".into()
    } else {
        path.to_owned()
    }
}

/// `text` with each `${…}` replaced.
fn expand(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("`${{` without its closing `}}` in {text:?}"))?;
            let value = lookup(&after[..end])?;
            remember(&value);
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of one `${…}` body.
fn lookup(body: &str) -> Result<String, String> {
    if let Some(path) = body.strip_prefix("file:") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("`${{file:{path}}}`: cannot read {path}: {e}"))?;
        return Ok(text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text)
            .to_owned());
    }
    let (name, default) = match body.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (body, None),
    };
    let valid = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if !valid {
        return Err(format!(
            "`${{{body}}}`: expected ${{NAME}}, ${{NAME:-default}} or ${{file:/path}} (NAME: letters, digits and _)"
        ));
    }
    match (std::env::var(name), default) {
        (Ok(v), _) => Ok(v),
        (Err(_), Some(d)) => Ok(d.to_owned()),
        (Err(std::env::VarError::NotUnicode(_)), None) => {
            Err(format!("environment variable {name} is not valid UTF-8"))
        }
        (Err(std::env::VarError::NotPresent), None) => Err(format!(
            "environment variable {name} is not set (use ${{{name}:-default}} for a default)"
        )),
    }
}

fn remember(value: &str) {
    if value.len() < MIN_HIDDEN {
        return;
    }
    let mut all = RESOLVED.write().unwrap_or_else(PoisonError::into_inner);
    if !all.iter().any(|v| v == value) {
        all.push(value.to_owned());
        // Longest first, so a value containing another is hidden whole.
        all.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// `text` with every value resolved from `${…}` replaced by [`HIDDEN`].
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let all = RESOLVED.read().unwrap_or_else(PoisonError::into_inner);
    if all.iter().all(|v| !text.contains(v.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for v in all.iter() {
        out = out.replace(v.as_str(), HIDDEN);
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(yaml: &str) -> Result<Value, Unresolved> {
        let mut v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        resolve(&mut v, "").map(|()| v)
    }

    #[test]
    fn names_defaults_files_and_escapes_resolve() {
        // SAFETY: set before any thread of this test reads it; the name
        // is used by this test only.
        unsafe { std::env::set_var("GLEANER_SECRETS_TEST_TOKEN", "s3cr3t-token") };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let v = resolved(&format!(
            "a: 'Bearer ${{GLEANER_SECRETS_TEST_TOKEN}}'\nb: ${{GLEANER_SECRETS_TEST_UNSET:-fallback}}\nc: [ '${{file:{}}}' ]\nd: 'cost: $$5, $${{NOT}}'\n",
            file.display()
        ))
        .unwrap();
        assert_eq!(v["a"], "Bearer s3cr3t-token");
        assert_eq!(v["b"], "fallback");
        assert_eq!(v["c"][0], "from-a-file");
        assert_eq!(v["d"], "cost: $$5, ${NOT}");
        assert_eq!(
            redact("header Bearer s3cr3t-token and from-a-file"),
            "header Bearer <redacted> and <redacted>"
        );
    }

    #[test]
    fn an_unset_name_is_an_error_naming_the_key() {
        let err = resolved(
            "pipelines:\n  - flushers:\n      - config: { token: '${GLEANER_SECRETS_NOPE}' }\n",
        )
        .unwrap_err();
        assert_eq!(err.0, "pipelines[0].flushers[0].config.token");
        assert!(
            err.1.contains("GLEANER_SECRETS_NOPE is not set"),
            "{}",
            err.1
        );
        let err = resolved("a: '${bad name}'").unwrap_err();
        assert!(err.1.contains("expected ${NAME}"), "{}", err.1);
        let err = resolved("a: '${OPEN'").unwrap_err();
        assert!(err.1.contains("closing"), "{}", err.1);
        let err = resolved("a: '${file:/nonexistent/gleaner}'").unwrap_err();
        assert!(
            err.1.contains("cannot read /nonexistent/gleaner"),
            "{}",
            err.1
        );
    }
}
