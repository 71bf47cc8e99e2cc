//! The consent values of the XDM choice set, and what each one means for sending.

use std::{fmt, str::FromStr};

/// One value of the XDM consent choice set.
///
/// The legal bases (`LI`, `CT`, `CP`, `VI`, `PI`) are kept apart from `y` because they are
/// not consent given by the person: they record why sending is lawful without it. They
/// allow mail like `y` does, but an explicit `n` or `dn` still wins over them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConsentValue {
    /// `y`: the person opted in.
    Yes,
    /// `n`: the person opted out.
    No,
    /// `p`: pending, for example a double opt-in awaiting confirmation. Not yet a yes.
    Pending,
    /// `u`: unknown; recorded but says nothing.
    Unknown,
    /// `dy`: yes by default (for example a setting the person could change).
    DefaultYes,
    /// `dn`: no by default.
    DefaultNo,
    /// `LI`: legitimate interest.
    LegitimateInterest,
    /// `CT`: necessary to perform a contract.
    Contract,
    /// `CP`: compliance with a legal obligation.
    LegalObligation,
    /// `VI`: vital interest of the person.
    VitalInterest,
    /// `PI`: public interest.
    PublicInterest,
}

/// What a value means when deciding whether mail may be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Sending is refused, whatever else is recorded (`n`, `dn`).
    Blocks,
    /// Sending is allowed unless something blocks (`y`, `dy` and the legal bases).
    Allows,
    /// The value decides nothing; the configured default applies (`p`, `u`).
    Neutral,
}

impl ConsentValue {
    /// Every value, in the order of the XDM documentation.
    pub const ALL: [ConsentValue; 11] = [
        Self::Yes,
        Self::No,
        Self::Pending,
        Self::Unknown,
        Self::DefaultYes,
        Self::DefaultNo,
        Self::LegitimateInterest,
        Self::Contract,
        Self::LegalObligation,
        Self::VitalInterest,
        Self::PublicInterest,
    ];

    /// The wire and storage spelling (`y`, `dn`, `LI` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yes => "y",
            Self::No => "n",
            Self::Pending => "p",
            Self::Unknown => "u",
            Self::DefaultYes => "dy",
            Self::DefaultNo => "dn",
            Self::LegitimateInterest => "LI",
            Self::Contract => "CT",
            Self::LegalObligation => "CP",
            Self::VitalInterest => "VI",
            Self::PublicInterest => "PI",
        }
    }

    /// What this value does to a sending decision.
    pub fn effect(self) -> Effect {
        match self {
            Self::No | Self::DefaultNo => Effect::Blocks,
            Self::Pending | Self::Unknown => Effect::Neutral,
            Self::Yes
            | Self::DefaultYes
            | Self::LegitimateInterest
            | Self::Contract
            | Self::LegalObligation
            | Self::VitalInterest
            | Self::PublicInterest => Effect::Allows,
        }
    }
}

impl fmt::Display for ConsentValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the XDM consent values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown consent value {0:?}; expected one of y, n, p, u, dy, dn, LI, CT, CP, VI, PI")]
pub struct UnknownValue(pub String);

impl FromStr for ConsentValue {
    type Err = UnknownValue;

    /// `y`, `n`, `p`, `u`, `dy` and `dn` in any case; the legal bases as XDM spells them,
    /// also in any case, since operators type them by hand.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownValue(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_through_its_spelling() {
        for v in ConsentValue::ALL {
            assert_eq!(v.as_str().parse::<ConsentValue>(), Ok(v));
        }
        assert_eq!("N".parse::<ConsentValue>(), Ok(ConsentValue::No));
        assert_eq!(
            "li".parse::<ConsentValue>(),
            Ok(ConsentValue::LegitimateInterest)
        );
        assert!("maybe".parse::<ConsentValue>().is_err());
        assert!("".parse::<ConsentValue>().is_err());
    }

    #[test]
    fn only_n_and_dn_block_and_only_p_and_u_are_neutral() {
        let blocking: Vec<_> = ConsentValue::ALL
            .into_iter()
            .filter(|v| v.effect() == Effect::Blocks)
            .collect();
        assert_eq!(blocking, [ConsentValue::No, ConsentValue::DefaultNo]);
        let neutral: Vec<_> = ConsentValue::ALL
            .into_iter()
            .filter(|v| v.effect() == Effect::Neutral)
            .collect();
        assert_eq!(neutral, [ConsentValue::Pending, ConsentValue::Unknown]);
    }
}
