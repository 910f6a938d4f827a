//! Locations (placement hints) and pool keys.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A placement hint, as in the original design, plus `default`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    Default,
    Wnam,
    Enam,
    Sam,
    Weur,
    Eeur,
    Apac,
    Oc,
    Afr,
    Me,
}

impl Location {
    pub const ALL: [Location; 10] = [
        Location::Default,
        Location::Wnam,
        Location::Enam,
        Location::Sam,
        Location::Weur,
        Location::Eeur,
        Location::Apac,
        Location::Oc,
        Location::Afr,
        Location::Me,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Location::Default => "default",
            Location::Wnam => "wnam",
            Location::Enam => "enam",
            Location::Sam => "sam",
            Location::Weur => "weur",
            Location::Eeur => "eeur",
            Location::Apac => "apac",
            Location::Oc => "oc",
            Location::Afr => "afr",
            Location::Me => "me",
        }
    }

    /// The region and country a container in this location reports to its app
    /// (`WARMPOOL_REGION`, `WARMPOOL_COUNTRY`). On one host these are labels only.
    pub fn region_and_country(self) -> (&'static str, &'static str) {
        match self {
            Location::Default => ("local", "unknown"),
            Location::Wnam => ("north-america-west", "US"),
            Location::Enam => ("north-america-east", "US"),
            Location::Sam => ("south-america", "BR"),
            Location::Weur => ("europe-west", "FR"),
            Location::Eeur => ("europe-east", "PL"),
            Location::Apac => ("asia-pacific", "SG"),
            Location::Oc => ("oceania", "AU"),
            Location::Afr => ("africa", "ZA"),
            Location::Me => ("middle-east", "AE"),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown location {0:?}: expected one of default, wnam, enam, sam, weur, eeur, apac, oc, afr, me")]
pub struct InvalidLocation(pub String);

impl FromStr for Location {
    type Err = InvalidLocation;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Location::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| InvalidLocation(s.chars().take(64).collect()))
    }
}

/// The key of a pool: its name and its location. Cheap to clone (the name is
/// shared), since keys travel with every container.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub pool: Arc<str>,
    pub location: Location,
}

impl PoolKey {
    pub fn new(pool: impl Into<Arc<str>>, location: Location) -> Self {
        Self {
            pool: pool.into(),
            location,
        }
    }
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pool, self.location)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_location_round_trips() {
        for l in Location::ALL {
            assert_eq!(l.as_str().parse::<Location>().unwrap(), l);
        }
        assert!("WNAM".parse::<Location>().is_err());
        assert!("mars".parse::<Location>().is_err());
    }
}
