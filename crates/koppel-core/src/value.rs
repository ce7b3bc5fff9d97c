//! Attribute values: what mappings compute and what targets store. A deliberately small
//! set of shapes every target can represent.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The value of one account attribute. `Null` means "absent": writing it clears the attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(untagged)]
pub enum AttrValue {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
    List(Vec<String>),
}

impl AttrValue {
    pub fn is_null(&self) -> bool {
        matches!(self, AttrValue::Null)
    }

    /// The text of a `Text` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// Empty text and empty lists count as absent: targets cannot tell them apart from a
    /// cleared attribute, so the planner must not either.
    pub fn normalized(self) -> AttrValue {
        match self {
            AttrValue::Text(s) if s.is_empty() => AttrValue::Null,
            AttrValue::List(l) if l.is_empty() => AttrValue::Null,
            v => v,
        }
    }
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::Text(s.to_owned())
    }
}

impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::Text(s)
    }
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Null => f.write_str("(none)"),
            AttrValue::Bool(b) => write!(f, "{b}"),
            AttrValue::Int(i) => write!(f, "{i}"),
            AttrValue::Text(s) => write!(f, "{s:?}"),
            AttrValue::List(l) => {
                f.write_str("[")?;
                for (i, s) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{s:?}")?;
                }
                f.write_str("]")
            }
        }
    }
}

// Hand-written rather than `#[serde(untagged)]`: untagged deserialization buffers the value
// and builds an error for every variant it tries, which made loading a large state file
// spend most of its time formatting error messages nobody reads.
impl<'de> Deserialize<'de> for AttrValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = AttrValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("null, a boolean, an integer, a string or a list of strings")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<AttrValue, E> {
                Ok(AttrValue::Null)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<AttrValue, E> {
                Ok(AttrValue::Null)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<AttrValue, E> {
                Ok(AttrValue::Bool(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<AttrValue, E> {
                Ok(AttrValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<AttrValue, E> {
                i64::try_from(v)
                    .map(AttrValue::Int)
                    .map_err(|_| E::custom(format!("integer {v} is too large for an attribute")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AttrValue, E> {
                Ok(AttrValue::Text(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<AttrValue, E> {
                Ok(AttrValue::Text(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<AttrValue, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(AttrValue::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::AttrValue;

    #[test]
    fn json_round_trip_of_every_shape() {
        for v in [
            AttrValue::Null,
            AttrValue::Bool(true),
            AttrValue::Int(-7),
            AttrValue::Text("Jansen-de Vries".into()),
            AttrValue::List(vec!["a".into(), "b".into()]),
        ] {
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(
                serde_json::from_str::<AttrValue>(&json).unwrap(),
                v,
                "{json}"
            );
        }
        assert!(serde_json::from_str::<AttrValue>("1.5").is_err());
        assert!(serde_json::from_str::<AttrValue>("[1]").is_err());
    }
}
