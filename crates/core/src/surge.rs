//! How many containers above its target a pool may run while a rollout replaces
//! its ready containers: a share of the target (`25%`) or a count (`3`).

use std::fmt;
use std::str::FromStr;

/// A rollout's surge: new-revision containers started beyond the target before
/// old ones are stopped. Never less than one container, so a rollout always
/// makes progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Surge {
    /// A share of the target, rounded up (`25%`).
    Percent(u32),
    /// A number of containers (`3`).
    Count(u32),
}

impl Default for Surge {
    fn default() -> Self {
        Surge::Percent(25)
    }
}

impl Surge {
    /// The surge of a pool of `target` ready containers: at least 1.
    pub fn of(self, target: u32) -> u32 {
        let n = match self {
            Surge::Percent(p) => (u64::from(target) * u64::from(p)).div_ceil(100),
            Surge::Count(n) => u64::from(n),
        };
        n.clamp(1, u64::from(u32::MAX)) as u32
    }
}

/// A surge that is neither `N%` (1 to 1000) nor a count (1 to 100000).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected a share of the target such as 25% (1 to 1000%) or a number of containers (1 to 100000)")]
pub struct InvalidSurge;

impl FromStr for Surge {
    type Err = InvalidSurge;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if (1..=1000).contains(&p) => Ok(Surge::Percent(p)),
                _ => Err(InvalidSurge),
            },
            None => match s.parse::<u32>() {
                Ok(n) if (1..=100_000).contains(&n) => Ok(Surge::Count(n)),
                _ => Err(InvalidSurge),
            },
        }
    }
}

impl fmt::Display for Surge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Surge::Percent(p) => write!(f, "{p}%"),
            Surge::Count(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_surge_is_a_rounded_up_share_or_a_count_and_never_zero() {
        assert_eq!(Surge::default().of(100), 25);
        assert_eq!(Surge::default().of(10), 3);
        assert_eq!(Surge::default().of(1), 1);
        assert_eq!(Surge::default().of(0), 1);
        assert_eq!(Surge::Count(4).of(2), 4);
        for (text, surge) in [("25%", Surge::Percent(25)), ("3", Surge::Count(3))] {
            assert_eq!(text.parse::<Surge>(), Ok(surge));
            assert_eq!(surge.to_string(), text);
        }
        for bad in ["", "0", "0%", "-1", "x%", "1001%", "100001", "2.5"] {
            assert_eq!(bad.parse::<Surge>(), Err(InvalidSurge), "{bad}");
        }
    }
}
