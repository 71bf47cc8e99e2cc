//! Email addresses in the one canonical form the store is keyed by.
//!
//! The same person arrives as `<Jane.Doe@Example.COM>` from the MTA, `jane.doe@example.com`
//! from a CSV export and `jane.doe+news@bücher.example` from a form. An opt-out recorded
//! under one spelling must block all of them, so every address passes through
//! [`AddressPolicy::normalize`] before it is stored or looked up.
//!
//! - The domain is converted to ASCII with IDNA (UTS #46), which also lower-cases it.
//! - The local part is lower-cased unless the operator says their mailboxes are
//!   case-sensitive (RFC 5321 allows it; almost no real mailbox is).
//! - With a subaddress separator configured, `jane+news` folds to `jane`.
//! - Non-ASCII local parts (SMTPUTF8, RFC 6531) are accepted as they are.

use std::fmt;

/// How addresses are compared: the operator's choices from the `[addresses]` config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// Compare local parts byte for byte instead of case-insensitively.
    pub local_part_case_sensitive: bool,
    /// Fold `local+tag` to `local` at the first occurrence of this character.
    pub subaddress_separator: Option<char>,
}

/// A normalized address: the key under which consent is stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(String);

/// Why a string is not a usable address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    #[error("the address is empty")]
    Empty,
    #[error("{0:?} has no @ between a local part and a domain")]
    MissingAt(String),
    #[error("{0:?} has an empty local part")]
    EmptyLocalPart(String),
    #[error("the local part of {0:?} is longer than 64 octets")]
    LocalPartTooLong(String),
    #[error("the local part of {0:?} contains {1:?}, which needs quoting")]
    BadLocalPart(String, char),
    #[error("the domain of {0:?} is not a valid domain name")]
    BadDomain(String),
}

const MAX_LOCAL_OCTETS: usize = 64;
const MAX_DOMAIN_OCTETS: usize = 253;

impl AddressPolicy {
    /// Brings `input` (bare, or in angle brackets as SMTP writes it) into canonical form.
    pub fn normalize(&self, input: &str) -> Result<Address, AddressError> {
        let trimmed = input.trim();
        let bare = trimmed
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(trimmed)
            .trim();
        if bare.is_empty() {
            return Err(AddressError::Empty);
        }
        let (local, domain) = bare
            .rsplit_once('@')
            .ok_or_else(|| AddressError::MissingAt(bare.to_owned()))?;
        let local = self.normalize_local(bare, local)?;
        let domain = normalize_domain(bare, domain)?;
        Ok(Address(format!("{local}@{domain}")))
    }

    fn normalize_local(&self, whole: &str, local: &str) -> Result<String, AddressError> {
        if local.is_empty() {
            return Err(AddressError::EmptyLocalPart(whole.to_owned()));
        }
        if local.len() > MAX_LOCAL_OCTETS {
            return Err(AddressError::LocalPartTooLong(whole.to_owned()));
        }
        let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
        if let Some(bad) = local.chars().find(|&c| is_forbidden(c, quoted)) {
            return Err(AddressError::BadLocalPart(whole.to_owned(), bad));
        }
        let mut local = if self.local_part_case_sensitive {
            local.to_owned()
        } else {
            local.to_lowercase()
        };
        let subaddress = self.subaddress_separator.filter(|_| !quoted);
        if let Some(at) = subaddress
            .and_then(|sep| local.find(sep))
            .filter(|&at| at > 0)
        {
            local.truncate(at);
        }
        Ok(local)
    }
}

/// Characters that may not stand in a local part: controls everywhere, and outside quotes
/// the white space and specials of RFC 5322 that would make it a different address.
fn is_forbidden(c: char, quoted: bool) -> bool {
    if c.is_control() {
        return true;
    }
    !quoted && (c.is_whitespace() || "()<>,;:\\\"[]".contains(c))
}

fn normalize_domain(whole: &str, domain: &str) -> Result<String, AddressError> {
    let bad = || AddressError::BadDomain(whole.to_owned());
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.is_empty() {
        return Err(bad());
    }
    if domain.starts_with('[') {
        // An address literal such as [192.0.2.1]: kept, but compared case-insensitively.
        return match domain.ends_with(']') && !domain.chars().any(char::is_whitespace) {
            true => Ok(domain.to_ascii_lowercase()),
            false => Err(bad()),
        };
    }
    let ascii = idna::domain_to_ascii(domain).map_err(|_| bad())?;
    let labels_ok = ascii.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if ascii.is_empty() || ascii.len() > MAX_DOMAIN_OCTETS || !labels_ok {
        return Err(bad());
    }
    Ok(ascii)
}

impl Address {
    /// The canonical spelling, `local@domain`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds an address that the store handed back. Values in the store were normalized
    /// when written, so they are trusted as they are.
    pub fn from_stored(s: String) -> Self {
        Address(s)
    }

    /// The part after the last `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(policy: &AddressPolicy, s: &str) -> Result<String, AddressError> {
        policy.normalize(s).map(|a| a.0)
    }

    #[test]
    fn case_and_brackets_and_idna_fold_to_one_key() {
        let p = AddressPolicy::default();
        for spelling in [
            "jane.doe@example.com",
            "<Jane.Doe@Example.COM>",
            " JANE.DOE@EXAMPLE.COM. ",
        ] {
            assert_eq!(norm(&p, spelling).unwrap(), "jane.doe@example.com");
        }
        assert_eq!(
            norm(&p, "Kai@Bücher.Example").unwrap(),
            "kai@xn--bcher-kva.example"
        );
        assert_eq!(
            norm(&p, "kai@xn--bcher-kva.example").unwrap(),
            "kai@xn--bcher-kva.example"
        );
    }

    #[test]
    fn smtputf8_local_parts_are_accepted_and_lower_cased() {
        let p = AddressPolicy::default();
        assert_eq!(
            norm(&p, "Δοκιμή@παράδειγμα.δοκιμή").unwrap(),
            {
                let d = idna::domain_to_ascii("παράδειγμα.δοκιμή").unwrap();
                format!("δοκιμή@{d}")
            }
        );
    }

    #[test]
    fn case_sensitive_local_parts_when_configured() {
        let p = AddressPolicy {
            local_part_case_sensitive: true,
            ..Default::default()
        };
        assert_eq!(norm(&p, "Jane@EXAMPLE.com").unwrap(), "Jane@example.com");
    }

    #[test]
    fn subaddresses_fold_only_when_configured() {
        let off = AddressPolicy::default();
        assert_eq!(
            norm(&off, "jane+news@example.com").unwrap(),
            "jane+news@example.com"
        );
        let on = AddressPolicy {
            subaddress_separator: Some('+'),
            ..Default::default()
        };
        assert_eq!(
            norm(&on, "jane+news@example.com").unwrap(),
            "jane@example.com"
        );
        assert_eq!(
            norm(&on, "jane+a+b@example.com").unwrap(),
            "jane@example.com"
        );
        // A local part that starts with the separator is not a subaddress.
        assert_eq!(norm(&on, "+1555@example.com").unwrap(), "+1555@example.com");
        let dash = AddressPolicy {
            subaddress_separator: Some('-'),
            ..Default::default()
        };
        assert_eq!(
            norm(&dash, "jane-news@example.com").unwrap(),
            "jane@example.com"
        );
    }

    #[test]
    fn quoted_local_parts_keep_their_specials() {
        let p = AddressPolicy {
            subaddress_separator: Some('+'),
            ..Default::default()
        };
        assert_eq!(
            norm(&p, "\"John Doe+x\"@example.com").unwrap(),
            "\"john doe+x\"@example.com"
        );
    }

    #[test]
    fn bad_addresses_are_clear_errors() {
        let p = AddressPolicy::default();
        assert_eq!(norm(&p, ""), Err(AddressError::Empty));
        assert_eq!(norm(&p, "<>"), Err(AddressError::Empty));
        assert!(matches!(norm(&p, "jane"), Err(AddressError::MissingAt(_))));
        assert!(matches!(
            norm(&p, "@example.com"),
            Err(AddressError::EmptyLocalPart(_))
        ));
        assert!(matches!(norm(&p, "jane@"), Err(AddressError::BadDomain(_))));
        assert!(matches!(
            norm(&p, "jane@exa mple.com"),
            Err(AddressError::BadDomain(_))
        ));
        assert!(matches!(
            norm(&p, "jane@-x.com"),
            Err(AddressError::BadDomain(_))
        ));
        assert!(matches!(
            norm(&p, "ja ne@example.com"),
            Err(AddressError::BadLocalPart(_, ' '))
        ));
        assert!(matches!(
            norm(&p, "a,b@example.com"),
            Err(AddressError::BadLocalPart(_, ','))
        ));
        let long = format!("{}@example.com", "a".repeat(65));
        assert!(matches!(
            norm(&p, &long),
            Err(AddressError::LocalPartTooLong(_))
        ));
        let error = norm(&p, "jane").unwrap_err().to_string();
        assert!(error.contains("\"jane\""), "{error}");
    }

    #[test]
    fn address_literals_are_kept() {
        let p = AddressPolicy::default();
        assert_eq!(norm(&p, "root@[192.0.2.1]").unwrap(), "root@[192.0.2.1]");
    }
}
