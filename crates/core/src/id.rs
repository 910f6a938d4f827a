//! Container ids: random UUIDv4 values, so that an id cannot be guessed.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The id of one container: a random (version 4) UUID, shown in its hyphenated
/// lowercase form. Holding an id is the capability to reach the container through
/// the proxy, so ids are never derived from anything predictable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(Uuid);

impl ContainerId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid container id {0:?}: expected a UUID such as 8f14e45f-ea7c-4d3a-9b2e-5c1f0a6d2b90")]
pub struct InvalidContainerId(pub String);

impl FromStr for ContainerId {
    type Err = InvalidContainerId;

    /// Accepts only the canonical hyphenated form (36 characters), in any case,
    /// so that one container has exactly one spelling in URLs.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 {
            return Err(InvalidContainerId(s.chars().take(64).collect()));
        }
        Uuid::try_parse(s)
            .map(Self)
            .map_err(|_| InvalidContainerId(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_v4_and_distinct() {
        let a = ContainerId::random();
        let b = ContainerId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_uuid().get_version_num(), 4);
    }

    #[test]
    fn parse_round_trips_and_rejects_other_spellings() {
        let id = ContainerId::random();
        assert_eq!(id.to_string().parse::<ContainerId>().unwrap(), id);
        assert_eq!(
            id.to_string()
                .to_uppercase()
                .parse::<ContainerId>()
                .unwrap(),
            id
        );
        for bad in [
            "",
            "abc",
            &id.as_uuid().simple().to_string(),
            &format!("{{{id}}}"),
            &format!("urn:uuid:{id}"),
            "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
        ] {
            assert!(bad.parse::<ContainerId>().is_err(), "{bad} parsed");
        }
    }
}
