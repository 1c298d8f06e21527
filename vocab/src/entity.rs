//! Who is governed: virtual keys, teams and customers. Limits, budgets and usage belong to
//! one [`EntityRef`]; the text forms (`key`, `team`, `customer`) are what the store keeps,
//! the admin API's paths name, and errors and metrics show.

use serde::{Deserialize, Serialize};

/// Which kind of entity limits, budgets and usage belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    /// A virtual key.
    Key,
    /// A team (owns keys).
    Team,
    /// A customer (owns teams).
    Customer,
}

impl EntityKind {
    /// The text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Team => "team",
            Self::Customer => "customer",
        }
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "key" => Self::Key,
            "team" => Self::Team,
            "customer" => Self::Customer,
            _ => return None,
        })
    }
}

/// A (kind, id) reference to a key, team or customer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityRef {
    /// Entity kind.
    pub kind: EntityKind,
    /// Entity id.
    pub id: String,
}

impl EntityRef {
    /// A reference to a virtual key.
    pub fn key(id: impl Into<String>) -> Self {
        Self {
            kind: EntityKind::Key,
            id: id.into(),
        }
    }

    /// A reference to a team.
    pub fn team(id: impl Into<String>) -> Self {
        Self {
            kind: EntityKind::Team,
            id: id.into(),
        }
    }

    /// A reference to a customer.
    pub fn customer(id: impl Into<String>) -> Self {
        Self {
            kind: EntityKind::Customer,
            id: id.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for kind in [EntityKind::Key, EntityKind::Team, EntityKind::Customer] {
            assert_eq!(EntityKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EntityKind::parse("org"), None);
    }
}
