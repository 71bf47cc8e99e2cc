//! Email addresses in the one canonical form the store is keyed by.
//!
//! The same person arrives as `<Jane.Doe@Example.COM>` from the MTA, `jane.doe@example.com`
//! from a CSV export and `jane.doe+news@bücher.example` from a form. An opt-out recorded
//! under one spelling must block all of them, so every address passes through
//! [`AddressPolicy::normalize`] before it is stored or looked up.
//!
//! The canonical form is the MTA's own *internal form* (Postfix's name for it): what the
//! MTA delivers to, whatever the client wrote.
//!
//! - An RFC 5321 source route (`<@relay.example,@b.example:jane@example.org>`) is dropped:
//!   MTAs ignore it and deliver to the mailbox after the colon (RFC 5321, 3.6.1).
//! - A quoted local part is unquoted and its backslash escapes undone:
//!   `"jane"@example.org` and `"ja\ne"@example.org` are `jane@example.org`, and
//!   `"john doe"@example.org` is kept as `john doe@example.org`. Postfix and Sendmail
//!   unquote the same way before they deliver, so every quoting of one mailbox has one key.
//! - The domain is converted to ASCII with IDNA (UTS #46), which also lower-cases it; a
//!   trailing dot is dropped.
//! - The local part is lower-cased unless the operator says their mailboxes are
//!   case-sensitive (RFC 5321 allows it; almost no real mailbox is).
//! - With a subaddress separator configured, `jane+news` folds to `jane` (quoted or not,
//!   as the MTA's `recipient_delimiter` does).
//! - Non-ASCII local parts (SMTPUTF8, RFC 6531) are accepted as they are.
//!
//! Some spellings route elsewhere only on some MTAs: `jane%example.org@relay` (the percent
//! hack) and `example.org!jane@relay` (a UUCP bang path) reach `jane@example.org` when
//! `relay` is a domain of the MTA itself. [`Address::aliases`] names those mailboxes too,
//! so that the milter can refuse a recipient when any of them opted out.

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
    /// Brings `input` (bare, or in angle brackets as SMTP writes it, with or without a
    /// source route) into canonical form.
    pub fn normalize(&self, input: &str) -> Result<Address, AddressError> {
        let trimmed = input.trim();
        let bare = trimmed
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(trimmed)
            .trim();
        let bare = strip_source_route(bare);
        if bare.is_empty() {
            return Err(AddressError::Empty);
        }
        let (local, domain) = split_local(bare)?;
        let local = self.normalize_local(bare, local)?;
        let domain = normalize_domain(bare, domain)?;
        Ok(Address(format!("{local}@{domain}")))
    }

    fn normalize_local(&self, whole: &str, local: Local<'_>) -> Result<String, AddressError> {
        let (mut local, quoted) = match local {
            Local::Plain(text) => {
                if let Some(bad) = text.chars().find(|&c| is_forbidden(c, false)) {
                    return Err(AddressError::BadLocalPart(whole.to_owned(), bad));
                }
                (text.to_owned(), false)
            }
            Local::Quoted(text) => (unquote(whole, text)?, true),
        };
        if local.is_empty() {
            return Err(AddressError::EmptyLocalPart(whole.to_owned()));
        }
        // The limit is on the wire form (RFC 5321, 4.5.3.1.1); the quotes count.
        if local.len() + if quoted { 2 } else { 0 } > MAX_LOCAL_OCTETS {
            return Err(AddressError::LocalPartTooLong(whole.to_owned()));
        }
        if !self.local_part_case_sensitive {
            local = local.to_lowercase();
        }
        if let Some(at) = self
            .subaddress_separator
            .and_then(|sep| local.find(sep))
            .filter(|&at| at > 0)
        {
            local.truncate(at);
        }
        Ok(local)
    }
}

/// The local part as written: bare, or the inside of its quotes (escapes not yet undone).
enum Local<'a> {
    Plain(&'a str),
    Quoted(&'a str),
}

/// `raw` (an SMTP path, angle brackets optional) without its source route: the address the
/// MTA stored for the recipient, which is how a milter must name it to remove it.
pub fn without_source_route(raw: &str) -> String {
    let trimmed = raw.trim();
    match trimmed.strip_prefix('<').and_then(|s| s.strip_suffix('>')) {
        Some(inner) => format!("<{}>", strip_source_route(inner.trim())),
        None => strip_source_route(trimmed).to_owned(),
    }
}

/// Drops an RFC 5321 source route (`@a.example,@b.example:`), which MTAs ignore.
fn strip_source_route(address: &str) -> &str {
    match address.strip_prefix('@') {
        // A route holds no quotes, so its first colon ends it.
        Some(_) => address
            .split_once(':')
            .map_or(address, |(_, rest)| rest.trim()),
        None => address,
    }
}

/// Splits `address` at the `@` that ends the local part, quoted or not.
fn split_local(address: &str) -> Result<(Local<'_>, &str), AddressError> {
    let missing = || AddressError::MissingAt(address.to_owned());
    if let Some(inner) = address.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in inner.char_indices() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    let domain = inner[i + 1..].strip_prefix('@').ok_or_else(missing)?;
                    return Ok((Local::Quoted(&inner[..i]), domain));
                }
                _ => {}
            }
        }
        return Err(missing());
    }
    let (local, domain) = address.rsplit_once('@').ok_or_else(missing)?;
    if local.is_empty() {
        return Err(AddressError::EmptyLocalPart(address.to_owned()));
    }
    Ok((Local::Plain(local), domain))
}

/// The text of a quoted local part: escapes undone, control characters refused.
fn unquote(whole: &str, quoted: &str) -> Result<String, AddressError> {
    let mut text = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' => chars.next().unwrap_or('\\'),
            c => c,
        };
        if c.is_control() {
            return Err(AddressError::BadLocalPart(whole.to_owned(), c));
        }
        text.push(c);
    }
    Ok(text)
}

/// Characters that may not stand in a local part: controls everywhere, and outside quotes
/// the white space and specials of RFC 5322 that would make it a different address.
fn is_forbidden(c: char, quoted: bool) -> bool {
    if c.is_control() {
        return true;
    }
    !quoted && (c.is_whitespace() || "()<>,;:\\\"[]@".contains(c))
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

    /// The part before the last `@`.
    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(l, _)| l)
    }

    /// Other mailboxes this address reaches when its domain is one of the MTA's own: the
    /// percent hack (`jane%example.org@relay`, at the last `%`) and a UUCP bang path
    /// (`example.org!jane@relay`, at the first `!`). Empty for almost every address.
    pub fn aliases(&self, policy: &AddressPolicy) -> Vec<Address> {
        let local = self.local_part();
        let mut aliases = Vec::new();
        if let Some((user, host)) = local.rsplit_once('%') {
            aliases.extend(policy.normalize(&format!("{user}@{host}")).ok());
        }
        if let Some((host, user)) = local.split_once('!') {
            aliases.extend(policy.normalize(&format!("{user}@{host}")).ok());
        }
        aliases.retain(|alias| alias != self);
        aliases
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
    fn every_spelling_an_mta_delivers_to_one_mailbox_has_one_key() {
        // Regression (issue 11, item 1): through Postfix, "optedout"@example.org and
        // <@relay.example:optedout@example.org> were delivered to optedout@example.org
        // but looked up under other keys.
        let p = AddressPolicy::default();
        for spelling in [
            "optedout@example.org",
            "<\"optedout\"@example.org>",
            "\"OptedOut\"@Example.ORG",
            "\"opted\\out\"@example.org",
            "<@relay.example:optedout@example.org>",
            "<@a.example,@b.example:\"optedout\"@example.org.>",
        ] {
            assert_eq!(
                norm(&p, spelling).unwrap(),
                "optedout@example.org",
                "{spelling}"
            );
        }
    }

    #[test]
    fn quoted_local_parts_that_need_quotes_keep_their_text() {
        let p = AddressPolicy {
            subaddress_separator: Some('+'),
            ..Default::default()
        };
        assert_eq!(
            norm(&p, "\"John Doe\"@example.com").unwrap(),
            "john doe@example.com"
        );
        assert_eq!(norm(&p, "\"a@b\"@example.com").unwrap(), "a@b@example.com");
        // The MTA splits the subaddress after unquoting, so folding does too.
        assert_eq!(
            norm(&p, "\"jane+news\"@example.com").unwrap(),
            "jane@example.com"
        );
        assert!(matches!(
            norm(&p, "\"ja\u{7}ne\"@example.com"),
            Err(AddressError::BadLocalPart(_, '\u{7}'))
        ));
        assert!(matches!(
            norm(&p, "\"jane@example.com"),
            Err(AddressError::MissingAt(_))
        ));
        assert!(matches!(
            norm(&p, "\"\"@example.com"),
            Err(AddressError::EmptyLocalPart(_))
        ));
    }

    #[test]
    fn percent_hack_and_bang_paths_are_aliases() {
        let p = AddressPolicy::default();
        let alias = |s: &str| -> Vec<String> {
            p.normalize(s)
                .unwrap()
                .aliases(&p)
                .into_iter()
                .map(|a| a.0)
                .collect()
        };
        assert_eq!(
            alias("optedout%example.org@relay.example"),
            ["optedout@example.org"]
        );
        assert_eq!(
            alias("example.org!optedout@relay.example"),
            ["optedout@example.org"]
        );
        assert!(alias("jane@example.org").is_empty());
        assert!(alias("100%@example.org").is_empty());
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
