//! Flattening a JSON object into fields while it is parsed: serde_json
//! drives a visitor that writes each member's dotted name and value text
//! into two scratch buffers, borrowing strings without escapes straight from
//! the body. No value tree is built; nothing is allocated per event once
//! the buffers have grown.

use std::fmt::{self, Write as _};
use std::ops::Range;

use gleaner_sdk::value::{BOOL, FLOAT, INT, JSON, NULL, STRING};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The members of one object: names and values as ranges of the buffers.
#[derive(Default)]
pub struct Flat {
    /// Dotted member names, one after another.
    pub names: String,
    /// Value texts, one after another.
    pub values: String,
    /// (name, value, type) of each member, in document order.
    pub members: Vec<(Range<usize>, Range<usize>, u8)>,
}

impl Flat {
    /// Flattens `json`, which must be one object (with nothing after it);
    /// false if it is not, leaving the members empty.
    pub fn parse(&mut self, json: &[u8], separator: &str, max_depth: usize) -> bool {
        self.names.clear();
        self.values.clear();
        self.members.clear();
        let mut de = serde_json::Deserializer::from_slice(json);
        let seed = Member {
            flat: self,
            name: 0..0,
            separator,
            depth_left: max_depth,
            top: true,
        };
        let ok = seed.deserialize(&mut de).is_ok() && de.end().is_ok();
        if !ok {
            self.members.clear();
        }
        ok
    }

    /// The members as (name, type, value text); the types are JSON's.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u8, &str)> {
        self.members
            .iter()
            .map(|(n, v, ty)| (&self.names[n.clone()], *ty, &self.values[v.clone()]))
    }
}

/// One value at a name (a range of `flat.names`); the top-level object
/// has no name.
struct Member<'f, 's> {
    flat: &'f mut Flat,
    name: Range<usize>,
    separator: &'s str,
    depth_left: usize,
    top: bool,
}

impl Member<'_, '_> {
    fn value(self, ty: u8, text: impl fmt::Display) {
        let start = self.flat.values.len();
        let _ = write!(self.flat.values, "{text}");
        let end = self.flat.values.len();
        self.flat.members.push((self.name, start..end, ty));
    }

    fn text(self, ty: u8, text: &str) {
        let start = self.flat.values.len();
        self.flat.values.push_str(text);
        let end = self.flat.values.len();
        self.flat.members.push((self.name, start..end, ty));
    }

    fn integer(self, negative: bool, mut v: u64) {
        // Beyond i64 it is a float (the wire's int is 64-bit signed).
        let ty = if v <= i64::MAX as u64 || (negative && v == 1 << 63) {
            INT
        } else {
            FLOAT
        };
        let mut digits = [0u8; 21];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if negative {
            at -= 1;
            digits[at] = b'-';
        }
        // Only ASCII digits and a sign were written.
        self.text(ty, std::str::from_utf8(&digits[at..]).unwrap_or_default());
    }

    fn not_an_object<E: de::Error>(&self) -> Result<(), E> {
        Err(E::custom("not an object"))
    }
}

impl<'de> DeserializeSeed<'de> for Member<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Member<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if self.top {
            return self.not_an_object();
        }
        self.text(STRING, v);
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        if self.top {
            return self.not_an_object();
        }
        self.text(BOOL, if v { "true" } else { "false" });
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        if self.top {
            return self.not_an_object();
        }
        self.integer(v < 0, v.unsigned_abs());
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        if self.top {
            return self.not_an_object();
        }
        self.integer(false, v);
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        if self.top {
            return self.not_an_object();
        }
        // As serde_json writes it (a finite f64 always has a Number).
        match serde_json::Number::from_f64(v) {
            Some(n) => self.value(FLOAT, n),
            None => self.text(NULL, "null"),
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if self.top {
            return self.not_an_object();
        }
        self.text(NULL, "null");
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        if self.top {
            return self.not_an_object();
        }
        // Arrays stay JSON text.
        let v: serde_json::Value =
            serde::Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        self.value(JSON, v);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.depth_left == 0 {
            // Deeper than max_depth: the object stays JSON text.
            let v: serde_json::Value =
                serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
            self.value(JSON, v);
            return Ok(());
        }
        let Member {
            flat,
            name,
            separator,
            depth_left,
            top,
        } = self;
        while let Some(child) = map.next_key_seed(Name {
            flat: &mut *flat,
            parent: name.clone(),
            separator: if top { "" } else { separator },
        })? {
            map.next_value_seed(Member {
                flat: &mut *flat,
                name: child,
                separator,
                depth_left: depth_left - 1,
                top: false,
            })?;
        }
        Ok(())
    }
}

/// A member name: written after its parent's name and the separator.
struct Name<'f, 's> {
    flat: &'f mut Flat,
    parent: Range<usize>,
    separator: &'s str,
}

impl<'de> DeserializeSeed<'de> for Name<'_, '_> {
    type Value = Range<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Range<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name<'_, '_> {
    type Value = Range<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Range<usize>, E> {
        let start = self.flat.names.len();
        self.flat.names.extend_from_within(self.parent);
        self.flat.names.push_str(self.separator);
        self.flat.names.push_str(v);
        Ok(start..self.flat.names.len())
    }
}
