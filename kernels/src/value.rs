//! Typed field values as `gleaner:plugin@0.3.0` encodes them: a type tag per
//! field and the value always held as text (see `field-types` in
//! `wit/plugin.wit`). The host checks plugins' batches with [`is_valid`];
//! the SDK and the parsers convert text with [`convert`]. Plain functions,
//! no I/O, no allocation unless a value must be rewritten.

use std::borrow::Cow;

/// UTF-8 text.
pub const STRING: u8 = 0;
/// A signed 64-bit integer in decimal.
pub const INT: u8 = 1;
/// A finite number in JSON's syntax.
pub const FLOAT: u8 = 2;
/// `true` or `false`.
pub const BOOL: u8 = 3;
/// `null`.
pub const NULL: u8 = 4;
/// A compact JSON array or object.
pub const JSON: u8 = 5;
/// The highest type tag.
pub const MAX: u8 = JSON;

/// The name of a type tag, as configs spell it (`types: {status: int}`).
pub fn name(ty: u8) -> &'static str {
    match ty {
        STRING => "string",
        INT => "int",
        FLOAT => "float",
        BOOL => "bool",
        NULL => "null",
        JSON => "json",
        _ => "unknown",
    }
}

/// The type a config names, for the conversions parsers offer (`string`,
/// `int`, `float`, `bool`); `None` for anything else.
pub fn parse_name(name: &str) -> Option<u8> {
    Some(match name {
        "string" => STRING,
        "int" | "integer" => INT,
        "float" | "double" => FLOAT,
        "bool" | "boolean" => BOOL,
        _ => return None,
    })
}

/// True if `text` is a value of type `ty` in its canonical text form.
/// JSON values are checked by their first byte only when `deep` is false.
pub fn is_valid(ty: u8, text: &[u8], deep: bool) -> bool {
    match ty {
        STRING => true,
        INT => is_int(text),
        FLOAT => is_number(text) && std::str::from_utf8(text).is_ok_and(finite),
        BOOL => text == b"true" || text == b"false",
        NULL => text == b"null",
        JSON => match text.first() {
            Some(b'{' | b'[') if deep => {
                serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
            }
            Some(b'{' | b'[') => true,
            _ => false,
        },
        _ => false,
    }
}

fn finite(s: &str) -> bool {
    s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// `-?(0|[1-9][0-9]*)` within i64.
fn is_int(text: &[u8]) -> bool {
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let canonical = match digits {
        [] => false,
        [b'0'] => text.len() == 1,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    canonical
        && (digits.len() < 19 || std::str::from_utf8(text).is_ok_and(|s| s.parse::<i64>().is_ok()))
}

/// JSON's number grammar: `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`.
fn is_number(text: &[u8]) -> bool {
    let mut i = usize::from(text.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while text.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - from
    };
    match text.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if text.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(text.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == text.len()
}

/// Converts text (a parsed string) to type `ty`: the canonical text of the
/// value, borrowed when `text` already is, or `None` when it does not
/// convert. Surrounding ASCII whitespace is ignored; `int` takes `+5` and
/// `007`; `float` takes anything Rust's `f64` parser does that is finite;
/// `bool` takes `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0` in any case.
pub fn convert(ty: u8, text: &str) -> Option<Cow<'_, str>> {
    match ty {
        STRING => Some(Cow::Borrowed(text)),
        INT if is_int(text.as_bytes()) => Some(Cow::Borrowed(text)),
        INT => text
            .trim_ascii()
            .parse::<i64>()
            .ok()
            .map(|n| Cow::Owned(n.to_string())),
        FLOAT if is_valid(FLOAT, text.as_bytes(), false) => Some(Cow::Borrowed(text)),
        FLOAT => text
            .trim_ascii()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(|f| Cow::Owned(f.to_string())),
        BOOL => {
            let t = text.trim_ascii();
            let truthy = ["true", "yes", "on", "1"]
                .iter()
                .any(|w| t.eq_ignore_ascii_case(w));
            let falsy = ["false", "no", "off", "0"]
                .iter()
                .any(|w| t.eq_ignore_ascii_case(w));
            match (truthy, falsy) {
                (true, _) => Some(Cow::Borrowed("true")),
                (_, true) => Some(Cow::Borrowed("false")),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The type of a JSON value's compact text, as `json-extract` reports it:
/// an integer within i64 is `int`, any other number `float`.
pub fn of_json(text: &[u8]) -> u8 {
    match text.first() {
        Some(b'"') => STRING,
        Some(b't' | b'f') => BOOL,
        Some(b'n') => NULL,
        Some(b'{' | b'[') => JSON,
        _ if is_int(text) => INT,
        _ => FLOAT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_is_what_each_type_accepts() {
        for ok in [
            "0",
            "-1",
            "200",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert!(is_valid(INT, ok.as_bytes(), true), "{ok}");
        }
        for bad in [
            "",
            "-",
            "+1",
            "01",
            "-0x",
            "1.0",
            "9223372036854775808",
            " 1",
        ] {
            assert!(!is_valid(INT, bad.as_bytes(), true), "{bad}");
        }
        for ok in ["0", "1.5", "-2e-3", "1E+10", "0.25", "18446744073709551615"] {
            assert!(is_valid(FLOAT, ok.as_bytes(), true), "{ok}");
        }
        for bad in ["", ".5", "1.", "NaN", "inf", "1e999", "--1", "1e", "0x10"] {
            assert!(!is_valid(FLOAT, bad.as_bytes(), true), "{bad}");
        }
        assert!(is_valid(BOOL, b"true", true) && !is_valid(BOOL, b"True", true));
        assert!(is_valid(NULL, b"null", true) && !is_valid(NULL, b"", true));
        assert!(is_valid(JSON, br#"{"a":[1]}"#, true));
        assert!(!is_valid(JSON, br#"{"a":"#, true) && is_valid(JSON, br#"{"a":"#, false));
        assert!(!is_valid(JSON, b"1", false) && !is_valid(9, b"x", true));
    }

    #[test]
    fn conversion_canonicalises_or_refuses() {
        assert!(matches!(convert(INT, "200"), Some(Cow::Borrowed("200"))));
        assert_eq!(convert(INT, " +007 ").as_deref(), Some("7"));
        assert_eq!(convert(INT, "-").as_deref(), None);
        assert_eq!(convert(INT, "1.5").as_deref(), None);
        assert_eq!(convert(FLOAT, "0.003").as_deref(), Some("0.003"));
        assert_eq!(convert(FLOAT, ".5").as_deref(), Some("0.5"));
        assert_eq!(convert(FLOAT, "NaN").as_deref(), None);
        assert_eq!(convert(BOOL, "Yes").as_deref(), Some("true"));
        assert_eq!(convert(BOOL, "0").as_deref(), Some("false"));
        assert_eq!(convert(BOOL, "maybe").as_deref(), None);
        assert_eq!(convert(STRING, "x").as_deref(), Some("x"));
        assert_eq!(parse_name("int"), Some(INT));
        assert_eq!(parse_name("json"), None);
    }

    #[test]
    fn json_text_types() {
        let cases: [(&[u8], u8); 7] = [
            (b"\"a\"", STRING),
            (b"503", INT),
            (b"-1.5", FLOAT),
            (b"1e3", FLOAT),
            (b"true", BOOL),
            (b"null", NULL),
            (b"[1]", JSON),
        ];
        for (text, ty) in cases {
            assert_eq!(of_json(text), ty, "{}", String::from_utf8_lossy(text));
        }
    }
}
