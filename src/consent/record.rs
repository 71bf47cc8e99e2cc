//! What is recorded: the keys (channel, scope), where a change came from, and the records
//! themselves.

use super::{Address, ConsentValue};
use std::{fmt, str::FromStr, time::SystemTime};

/// The channel a consent applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
        }
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "email" => Ok(Self::Email),
            "sms" => Ok(Self::Sms),
            _ => Err(format!("unknown channel {s:?}; expected email or sms")),
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a consent covers: one list, or all marketing (`*`).
///
/// List ids are compared case-insensitively, like the `List-Id` of RFC 2919, so they are
/// kept in lower case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `*`: every kind of marketing mail.
    All,
    /// One list, by its id.
    List(String),
}

/// A string that cannot be a list id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid list id {0:?}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, or * for all marketing"
)]
pub struct ScopeError(pub String);

impl Scope {
    pub fn as_str(&self) -> &str {
        match self {
            Self::All => "*",
            Self::List(id) => id,
        }
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "*" {
            return Ok(Self::All);
        }
        let valid = (1..=64).contains(&s.len())
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        match valid {
            true => Ok(Self::List(s.to_ascii_lowercase())),
            false => Err(ScopeError(s.to_owned())),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a change of consent came from; kept in the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The RFC 8058 one-click POST.
    OneClick,
    /// A mail to the `mailto:` address of `List-Unsubscribe`.
    Mailto,
    /// The admin API.
    Api,
    /// `optout-milter consent set`.
    Cli,
    /// `optout-milter consent import`.
    Import,
    /// An SMS keyword such as STOP.
    SmsKeyword,
    /// The landing page a person reached from the link (including its undo button).
    Web,
    /// A mailbox provider's feedback-loop report that the person marked a message as spam.
    Complaint,
    /// `consent erase`: the address was erased, and its pseudonym keeps the opt-out.
    Erasure,
}

impl Source {
    pub const ALL: [Source; 9] = [
        Self::OneClick,
        Self::Mailto,
        Self::Api,
        Self::Cli,
        Self::Import,
        Self::SmsKeyword,
        Self::Web,
        Self::Complaint,
        Self::Erasure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OneClick => "one-click",
            Self::Mailto => "mailto",
            Self::Api => "api",
            Self::Cli => "cli",
            Self::Import => "import",
            Self::SmsKeyword => "sms-keyword",
            Self::Web => "web",
            Self::Complaint => "complaint",
            Self::Erasure => "erasure",
        }
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown source {s:?}"))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change to record: the new value for one address, channel and scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub address: Address,
    pub channel: Channel,
    pub scope: Scope,
    pub value: ConsentValue,
    pub source: Source,
    pub at: SystemTime,
    /// Free text kept with the change: who or what asked for it, and how it was verified.
    pub evidence: String,
}

/// The current consent of one address for one channel and scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentRecord {
    pub address: Address,
    pub channel: Channel,
    pub scope: Scope,
    pub value: ConsentValue,
    pub source: Source,
    pub updated_at: SystemTime,
    pub evidence: String,
}

/// One row of the append-only audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub id: i64,
    pub change: Change,
    /// The change removed the record: the key has no value again (the model's empty
    /// value), as an undo leaves a key that had none. `change.value` is then `u`, which
    /// decides like no record.
    pub emptied: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_fold_case() {
        assert_eq!("*".parse::<Scope>(), Ok(Scope::All));
        assert_eq!(
            "News.Weekly".parse::<Scope>(),
            Ok(Scope::List("news.weekly".into()))
        );
        for bad in ["", "-x", "a b", "a/b", &"x".repeat(65)] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sources_round_trip() {
        for s in Source::ALL {
            assert_eq!(s.as_str().parse::<Source>(), Ok(s));
        }
    }
}
