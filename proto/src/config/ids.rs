//! Ids of the things a hub config names, as types, so that a gun id cannot be passed where
//! a module id is expected.
//!
//! Numeric ids (segments, guns, modules, OCPP connectors) are what the CAN and protobuf
//! messages carry. Text ids (hub, cabinet, dispenser) appear in Zenoh key expressions
//! (`ringhub/<hub>/can/<cabinet>/rx`, DESIGN.md §5) and metric labels, so they are limited
//! to `a-z`, `0-9` and `-`: nothing that a key expression or a label would need escaped.

use std::fmt;
use std::str::FromStr;

/// Why a text id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is the empty string.
    #[error("an id cannot be empty")]
    Empty,
    /// The id has a character outside `a-z`, `0-9` and `-`.
    #[error("{id:?} has {bad:?}: ids use only a-z, 0-9 and '-'")]
    BadChar { id: String, bad: char },
}

/// Checks the text id rule: non-empty, only `a-z`, `0-9` and `-`.
fn check_text_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        Some(bad) => Err(IdError::BadChar {
            id: id.to_owned(),
            bad,
        }),
        None => Ok(()),
    }
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
        )]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The id, or why it breaks the text id rule (`a-z`, `0-9`, `-`, non-empty).
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                check_text_id(&id)?;
                Ok(Self(id))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_id!(
    /// The hub's id: the `<hub>` of every Zenoh key `ringhub/<hub>/…`.
    HubId
);
text_id!(
    /// A power cabinet's id (`cab-a`): names its node and its CAN bus.
    CabinetId
);
text_id!(
    /// A dispenser's id (`disp-a`): the OCPP charge point its guns belong to.
    DispenserId
);

macro_rules! number_id {
    ($(#[$doc:meta])* $name:ident($int:ty)) => {
        $(#[$doc])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            PartialOrd,
            Ord,
            serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $int);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

number_id!(
    /// A segment's id: its position in ring order, counted from 0.
    SegmentId(u16)
);
number_id!(
    /// A gun's id, unique in the hub.
    GunId(u16)
);
number_id!(
    /// A power module's id, unique in the hub.
    ModuleId(u16)
);
number_id!(
    /// An OCPP connector id, unique within its dispenser and counted from 1
    /// (OCPP 1.6 §3.6: connector 0 means the charge point as a whole).
    ConnectorId(u32)
);

impl SegmentId {
    /// The segment's position in ring order (the same number).
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_ids_take_lowercase_digits_and_dashes() {
        assert_eq!(
            CabinetId::new("cab-a-2").map(String::from),
            Ok("cab-a-2".into())
        );
        assert_eq!(HubId::new(""), Err(IdError::Empty));
        assert_eq!(
            HubId::new("Demo").map_err(|e| e.to_string()),
            Err(r#""Demo" has 'D': ids use only a-z, 0-9 and '-'"#.into())
        );
        assert!("disp/a".parse::<DispenserId>().is_err());
    }

    #[test]
    fn ids_print_bare() {
        assert_eq!(SegmentId(3).to_string(), "3");
        assert_eq!(
            CabinetId::new("cab-a").map(|c| c.to_string()),
            Ok("cab-a".into())
        );
    }
}
