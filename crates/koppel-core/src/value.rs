//! Attribute values: what mappings compute and what targets store. A deliberately small
//! set of shapes every target can represent.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The value of one account attribute. `Null` means "absent": writing it clears the attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
