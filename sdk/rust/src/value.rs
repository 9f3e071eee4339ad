//! Typed field values and severities. On the wire a value is its text plus
//! a type tag (`field-types` in `wit/plugin.wit`); [`Value`] is the typed
//! view of one, and [`severity`] names OpenTelemetry's severity numbers.
//! No I/O; the tags and conversions come from `gleaner-kernels`, the same
//! code the host checks batches with.

use std::borrow::Cow;
use std::collections::BTreeMap;

pub use gleaner_kernels::value::{BOOL, FLOAT, INT, JSON, NULL, STRING, convert, parse_name};

/// A field's value with its type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// Text.
    Str(&'a str),
    /// A signed 64-bit integer.
    Int(i64),
    /// A finite floating-point number (a NaN or infinity is written as null).
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// JSON's `null`.
    Null,
    /// A JSON array or object, as compact JSON text.
    Json(&'a str),
}

impl<'a> Value<'a> {
    /// The type tag this value is sent with.
    pub fn type_tag(&self) -> u8 {
        match self {
            Value::Str(_) => STRING,
            Value::Int(_) => INT,
            Value::Float(f) if f.is_finite() => FLOAT,
            Value::Float(_) | Value::Null => NULL,
            Value::Bool(_) => BOOL,
            Value::Json(_) => JSON,
        }
    }

    /// The value's text on the wire (what a plugin that ignores types sees).
    pub fn text(&self) -> Cow<'a, str> {
        match *self {
            Value::Str(s) | Value::Json(s) => Cow::Borrowed(s),
            Value::Int(n) => Cow::Owned(n.to_string()),
            Value::Float(f) if f.is_finite() => Cow::Owned(f.to_string()),
            Value::Float(_) | Value::Null => Cow::Borrowed("null"),
            Value::Bool(true) => Cow::Borrowed("true"),
            Value::Bool(false) => Cow::Borrowed("false"),
        }
    }

    /// Reads a value from its wire form. Text that does not match its tag
    /// (the host never lets such a batch through) reads as a string.
    pub(crate) fn decode(ty: u8, text: &'a [u8]) -> Value<'a> {
        let Ok(s) = std::str::from_utf8(text) else {
            return Value::Str("");
        };
        let typed = match ty {
            INT => s.parse().ok().map(Value::Int),
            FLOAT => s.parse().ok().map(Value::Float),
            BOOL => s.parse().ok().map(Value::Bool),
            NULL => Some(Value::Null),
            JSON => Some(Value::Json(s)),
            _ => None,
        };
        typed.unwrap_or(Value::Str(s))
    }

    /// The text if this is a string.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number if this is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The number if this is an integer or a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(n) => Some(*n as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(s: &'a str) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value<'_> {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<i32> for Value<'_> {
    fn from(n: i32) -> Self {
        Value::Int(n.into())
    }
}

impl From<u32> for Value<'_> {
    fn from(n: u32) -> Self {
        Value::Int(n.into())
    }
}

impl From<f64> for Value<'_> {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<bool> for Value<'_> {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// The `types:` option of the parsers (`types: {status: int, ratio: float}`):
/// which of the fields a parser makes to convert, and to what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldTypes(BTreeMap<String, u8>);

impl FieldTypes {
    /// Reads the option; the error names the key (`types.status: ...`).
    pub fn from_config(types: &BTreeMap<String, String>) -> Result<Self, String> {
        let mut out = BTreeMap::new();
        for (field, name) in types {
            let ty = parse_name(name).ok_or_else(|| {
                format!("types.{field}: unknown type `{name}` (string, int, float or bool)")
            })?;
            out.insert(field.clone(), ty);
        }
        Ok(FieldTypes(out))
    }

    /// The type of field `name` (string unless configured).
    pub fn of(&self, name: &str) -> u8 {
        self.0.get(name).copied().unwrap_or(STRING)
    }

    /// The configured fields not in `known` (what a parser cannot make),
    /// as an error naming the first, or `Ok`.
    pub fn check_known(
        &self,
        mut known: impl FnMut(&str) -> bool,
        what: &str,
    ) -> Result<(), String> {
        match self.0.keys().find(|f| !known(f)) {
            Some(f) => Err(format!("types.{f}: {what}")),
            None => Ok(()),
        }
    }
}

/// OpenTelemetry's severity numbers: 1-4 trace, 5-8 debug, 9-12 info,
/// 13-16 warn, 17-20 error, 21-24 fatal; 0 is unset.
pub mod severity {
    /// Not set.
    pub const UNSET: u8 = 0;
    /// `TRACE`.
    pub const TRACE: u8 = 1;
    /// `DEBUG`.
    pub const DEBUG: u8 = 5;
    /// `INFO`.
    pub const INFO: u8 = 9;
    /// `WARN`.
    pub const WARN: u8 = 13;
    /// `ERROR`.
    pub const ERROR: u8 = 17;
    /// `FATAL`.
    pub const FATAL: u8 = 21;

    /// OpenTelemetry's short name of a severity number (`WARN`, `ERROR2`),
    /// or `None` for 0 and numbers above 24.
    pub fn text(n: u8) -> Option<&'static str> {
        const NAMES: [&str; 24] = [
            "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO",
            "INFO2", "INFO3", "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2",
            "ERROR3", "ERROR4", "FATAL", "FATAL2", "FATAL3", "FATAL4",
        ];
        NAMES.get(usize::from(n).checked_sub(1)?).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_their_wire_form() {
        for v in [
            Value::Str("x"),
            Value::Int(-3),
            Value::Float(0.25),
            Value::Bool(true),
            Value::Null,
            Value::Json("[1]"),
        ] {
            assert_eq!(Value::decode(v.type_tag(), v.text().as_bytes()), v);
        }
        assert_eq!(Value::Float(f64::NAN).type_tag(), NULL);
        assert_eq!(Value::decode(INT, b"x1"), Value::Str("x1"));
        assert_eq!(severity::text(13), Some("WARN"));
        assert_eq!(severity::text(24), Some("FATAL4"));
        assert_eq!(severity::text(0), None);
        assert_eq!(severity::text(25), None);
    }
}
