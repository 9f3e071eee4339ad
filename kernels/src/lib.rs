//! The native kernels of `gleaner:plugin/kernels` (see `wit/plugin.wit`):
//! regexes run over a whole body column, and JSON member extraction.
//! Plain functions over `(bodies, ends)` columns, shared by the host (which
//! exposes them to plugins) and the Rust SDK (which runs them in a plugin's
//! native tests), so both give the same answers. No I/O, no state beyond a
//! compiled regex. [`value`] is the typed-value encoding they share with
//! every plugin (without the `regex` feature, only it and [`check_ends`]).

pub mod value;

#[cfg(feature = "regex")]
use serde_json::Value;

/// Compiled program size limit for a plugin's regex.
const REGEX_SIZE_LIMIT: usize = 10 << 20;

/// A regex a plugin compiled (the `regex` resource's host side).
#[cfg(feature = "regex")]
#[derive(Debug)]
pub struct CompiledRegex {
    re: regex::bytes::Regex,
}

#[cfg(feature = "regex")]
impl CompiledRegex {
    /// Compiles `pattern` with the kernels' size limit.
    pub fn new(pattern: &str) -> Result<Self, String> {
        regex::bytes::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map(|re| CompiledRegex { re })
            .map_err(|e| e.to_string())
    }

    /// Group names, group 0 first, "" for unnamed groups.
    pub fn group_names(&self) -> Vec<String> {
        self.re
            .capture_names()
            .map(|n| n.unwrap_or("").to_owned())
            .collect()
    }

    /// Events whose body has a match.
    pub fn matching(&self, bodies: &[u8], ends: &[u32]) -> Result<Vec<u32>, String> {
        let mut out = Vec::new();
        for (i, _, body) in column(bodies, ends)? {
            if self.re.is_match(body) {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Every non-overlapping match, as (event, start, len) into `bodies`.
    pub fn find_all(&self, bodies: &[u8], ends: &[u32]) -> Result<Vec<[u32; 3]>, String> {
        let mut out = Vec::new();
        for (i, at, body) in column(bodies, ends)? {
            for m in self.re.find_iter(body) {
                out.push([i, at + m.start() as u32, m.len() as u32]);
            }
        }
        Ok(out)
    }

    /// The groups of each event's first match, as (event, group, start, len).
    pub fn captures(&self, bodies: &[u8], ends: &[u32]) -> Result<Vec<[u32; 4]>, String> {
        let mut out = Vec::new();
        let mut locs = self.re.capture_locations();
        for (i, at, body) in column(bodies, ends)? {
            if self.re.captures_read(&mut locs, body).is_none() {
                continue;
            }
            for g in 0..locs.len() {
                if let Some((s, e)) = locs.get(g) {
                    out.push([i, g as u32, at + s as u32, (e - s) as u32]);
                }
            }
        }
        Ok(out)
    }
}

/// Checks a column's end offsets (the WIT batch invariant: non-decreasing,
/// none past the bytes). On error: the index of the first bad entry. The
/// host's own batch layout check uses it too.
pub fn check_ends(bytes: usize, ends: &[u32]) -> Result<(), usize> {
    let mut prev = 0u32;
    for (i, &end) in ends.iter().enumerate() {
        if end < prev || end as usize > bytes {
            return Err(i);
        }
        prev = end;
    }
    Ok(())
}

/// The events of a column: (index, start offset, body). A column the
/// plugin built wrong is an error that names the entry.
#[cfg(feature = "regex")]
fn column<'a>(
    bodies: &'a [u8],
    ends: &'a [u32],
) -> Result<impl Iterator<Item = (u32, u32, &'a [u8])> + 'a, String> {
    if bodies.len() > u32::MAX as usize || ends.len() > u32::MAX as usize {
        return Err("the column is larger than 4 GiB".into());
    }
    check_ends(bodies.len(), ends).map_err(|i| {
        format!(
            "body-ends[{i}] = {} is out of order or beyond the {} bytes of bodies",
            ends[i],
            bodies.len()
        )
    })?;
    Ok(ends.iter().enumerate().scan(0u32, move |start, (i, &end)| {
        let s = *start;
        *start = end;
        Some((i as u32, s, &bodies[s as usize..end as usize]))
    }))
}

/// What [`json_extract`] found.
#[cfg(feature = "regex")]
#[derive(Debug, Default, PartialEq, Eq)]
pub struct JsonMembers {
    /// The values, concatenated.
    pub values: Vec<u8>,
    /// (event, index into the paths, start, len into `values`).
    pub fields: Vec<[u32; 4]>,
    /// The type of each field's value (see [`value`]).
    pub types: Vec<u8>,
    /// Events whose body is not a JSON object.
    pub invalid: Vec<u32>,
}

/// Members named by `paths` of each body that is a JSON object.
#[cfg(feature = "regex")]
pub fn json_extract(bodies: &[u8], ends: &[u32], paths: &[String]) -> Result<JsonMembers, String> {
    let split: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
    let (mut values, mut fields, mut invalid) = (Vec::new(), Vec::new(), Vec::new());
    let mut types = Vec::new();
    for (i, _, body) in column(bodies, ends)? {
        let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
            invalid.push(i);
            continue;
        };
        for (k, path) in split.iter().enumerate() {
            let mut v = obj.get(path[0]);
            for step in &path[1..] {
                v = v.and_then(|v| v.get(step));
            }
            let Some(v) = v else { continue };
            let start = values.len();
            let ty = match v {
                Value::String(_) => value::STRING,
                Value::Number(n) if n.is_i64() => value::INT,
                Value::Number(_) => value::FLOAT,
                Value::Bool(_) => value::BOOL,
                Value::Null => value::NULL,
                Value::Array(_) | Value::Object(_) => value::JSON,
            };
            match v {
                Value::String(s) => values.extend_from_slice(s.as_bytes()),
                other => serde_json::to_writer(&mut values, other).map_err(|e| e.to_string())?,
            }
            types.push(ty);
            if values.len() > u32::MAX as usize {
                return Err("the extracted values are larger than 4 GiB".into());
            }
            fields.push([i, k as u32, start as u32, (values.len() - start) as u32]);
        }
    }
    Ok(JsonMembers {
        values,
        fields,
        types,
        invalid,
    })
}

#[cfg(all(test, feature = "regex"))]
mod tests {
    use super::*;

    fn col(lines: &[&str]) -> (Vec<u8>, Vec<u32>) {
        let mut bodies = Vec::new();
        let mut ends = Vec::new();
        for l in lines {
            bodies.extend_from_slice(l.as_bytes());
            ends.push(bodies.len() as u32);
        }
        (bodies, ends)
    }

    #[test]
    fn regex_kernels_give_offsets_into_the_column() {
        let re = CompiledRegex::new(r"(?P<k>[a-z]+)=(?P<v>\d+)?").unwrap();
        assert_eq!(re.group_names(), ["", "k", "v"]);
        let (b, e) = col(&["a=1 b=22", "none", "", "x= y=3"]);
        assert_eq!(re.matching(&b, &e).unwrap(), [0, 3]);
        // "a=1 b=22" is 0..8, "none" 8..12, "" 12..12, "x= y=3" 12..18.
        assert_eq!(
            re.find_all(&b, &e).unwrap(),
            [[0, 0, 3], [0, 4, 4], [3, 12, 2], [3, 15, 3]]
        );
        // Group 2 did not take part in event 3's first match.
        assert_eq!(
            re.captures(&b, &e).unwrap(),
            [
                [0, 0, 0, 3],
                [0, 1, 0, 1],
                [0, 2, 2, 1],
                [3, 0, 12, 2],
                [3, 1, 12, 1]
            ]
        );
    }

    #[test]
    fn a_bad_column_or_pattern_is_an_error_that_says_where() {
        let re = CompiledRegex::new("a").unwrap();
        let err = re.find_all(b"abc", &[2, 1]).unwrap_err();
        assert!(err.contains("body-ends[1] = 1"), "{err}");
        let err = re.matching(b"abc", &[4]).unwrap_err();
        assert!(err.contains("beyond the 3 bytes"), "{err}");
        let err = CompiledRegex::new("(a").unwrap_err();
        assert!(err.contains("unclosed group"), "{err}");
        let err = CompiledRegex::new(r"\w{1000}{1000}").unwrap_err();
        assert!(err.contains("size limit"), "{err}");
    }

    #[test]
    fn json_members_by_path_with_strings_unescaped() {
        let (b, e) = col(&[
            r#"{"level":"warn","msg":"a \"quoted\" text","http":{"status":503},"tags":["a"]}"#,
            "not json",
            r#"[1,2]"#,
            r#"{"level":null}"#,
        ]);
        let paths: Vec<String> = ["level", "http.status", "tags", "msg", "missing.x"]
            .map(String::from)
            .into();
        let JsonMembers {
            values,
            fields,
            types,
            invalid,
        } = json_extract(&b, &e, &paths).unwrap();
        use value::*;
        assert_eq!(types, [STRING, INT, JSON, STRING, NULL]);
        let got: Vec<(u32, &str, &str)> = fields
            .iter()
            .map(|&[ev, k, s, l]| {
                let v = std::str::from_utf8(&values[s as usize..(s + l) as usize]).unwrap();
                (ev, paths[k as usize].as_str(), v)
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, "level", "warn"),
                (0, "http.status", "503"),
                (0, "tags", r#"["a"]"#),
                (0, "msg", r#"a "quoted" text"#),
                (3, "level", "null"),
            ]
        );
        assert_eq!(invalid, [1, 2]);
    }
}
