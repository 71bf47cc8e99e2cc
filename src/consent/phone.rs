//! Phone numbers, the key of a person on channel `sms`: normalized to E.164 (`+` and the
//! digits) with libphonenumber's metadata (the `phonenumber` crate), so that `06 12 34 56
//! 78` written in France, `+33 6 12 34 56 78` and `0033612345678` are one person.
//!
//! A number written without its country code needs the configured default region
//! (`[sms] default_region`); without one it is refused rather than guessed. A number that
//! cannot exist in its region (too short, an unassigned range) is refused too.

use super::Address;
use std::str::FromStr;

/// How national numbers are read, and which mail domains are email-to-SMS gateways.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhonePolicy {
    /// The region of numbers written without a country code, e.g. `FR`.
    pub default_region: Option<phonenumber::country::Id>,
    /// Domains whose mailboxes are phone numbers (`NUMBER@gateway`), in lower case.
    pub gateway_domains: Vec<String>,
}

/// Text that is not a phone number this product can key consent by.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhoneError {
    #[error("{0:?} is not a phone number")]
    NotANumber(String),
    #[error("{0:?} has no country code: write it as +CC… or set [sms] default_region")]
    NoRegion(String),
    #[error("{0:?} is not a valid phone number for its region")]
    Invalid(String),
}

impl PhonePolicy {
    /// The region of `code` (`FR`, `us` …), for the config.
    pub fn region(code: &str) -> Option<phonenumber::country::Id> {
        phonenumber::country::Id::from_str(&code.trim().to_ascii_uppercase()).ok()
    }

    /// `input` in E.164 (`+33612345678`), as the store keeps it.
    pub fn normalize(&self, input: &str) -> Result<Address, PhoneError> {
        let text = input.trim();
        let digits = text.chars().filter(char::is_ascii_digit).count();
        let allowed = |c: char| c.is_ascii_digit() || " +-.()/".contains(c);
        if digits < 3 || !text.chars().all(allowed) {
            return Err(PhoneError::NotANumber(text.to_owned()));
        }
        let international = text.starts_with('+') || text.starts_with("00");
        if !international && self.default_region.is_none() {
            return Err(PhoneError::NoRegion(text.to_owned()));
        }
        let number = phonenumber::parse(self.default_region, text)
            .map_err(|_| PhoneError::NotANumber(text.to_owned()))?;
        if !number.is_valid() {
            return Err(PhoneError::Invalid(text.to_owned()));
        }
        Ok(Address::from_stored(
            number.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }
}

impl PhonePolicy {
    /// The phone number an email-to-SMS gateway address stands for: its local part, with
    /// or without `+` (a gateway's numbers are international), or national with the
    /// default region. `None` for other domains, and for local parts that are no number.
    pub fn gateway_number(&self, address: &Address) -> Option<Address> {
        if !self.gateway_domains.iter().any(|d| d == address.domain()) {
            return None;
        }
        self.normalize_sender(address.local_part()).ok()
    }

    /// A number as gateways and SMS providers write it: international, with or without
    /// its `+` (`447700900001`), or else national in the default region.
    pub fn normalize_sender(&self, text: &str) -> Result<Address, PhoneError> {
        let text = text.trim();
        let international = match text.starts_with('+') {
            true => text.to_owned(),
            false => format!("+{text}"),
        };
        self.normalize(&international)
            .or_else(|_| self.normalize(text))
    }
}

/// Whether a stored key is a phone number (E.164) rather than an email address.
pub fn is_phone_number(key: &str) -> bool {
    key.starts_with('+') && key.len() > 1 && key[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn france() -> PhonePolicy {
        PhonePolicy {
            default_region: PhonePolicy::region("fr"),
            gateway_domains: vec!["sms.example.net".into()],
        }
    }

    #[test]
    fn national_and_international_forms_of_one_number_agree() {
        for written in [
            "06 12 34 56 78",
            "06.12.34.56.78",
            "+33 6 12 34 56 78",
            "+33612345678",
            "0033 6 12 34 56 78",
            " (+33) 6-12-34-56-78 ",
        ] {
            assert_eq!(
                france().normalize(written).map(|a| a.as_str().to_owned()),
                Ok("+33612345678".to_owned()),
                "{written}"
            );
        }
        // International numbers need no region; other countries keep their own code.
        let none = PhonePolicy::default();
        assert_eq!(
            none.normalize("+1 (415) 555-2671").unwrap().as_str(),
            "+14155552671"
        );
        assert_eq!(
            france().normalize("+44 20 7946 0958").unwrap().as_str(),
            "+442079460958"
        );
    }

    #[test]
    fn what_is_not_a_number_is_refused_with_a_reason() {
        let cases = [
            ("ann@example.org", "not a phone number"),
            ("STOP", "not a phone number"),
            ("12", "not a phone number"),
            ("06 12", "not a valid phone number"),
            ("+33 1", "not a"),
            ("+999 123 456 789", "not a"),
        ];
        for (written, says) in cases {
            let error = france().normalize(written).unwrap_err().to_string();
            assert!(error.contains(says), "{written}: {error}");
        }
        let error = PhonePolicy::default()
            .normalize("06 12 34 56 78")
            .unwrap_err();
        assert!(matches!(error, PhoneError::NoRegion(_)), "{error}");
        assert!(error.to_string().contains("default_region"));
    }

    #[test]
    fn gateway_addresses_name_their_number() {
        let policy = france();
        let number = |text: &str| {
            let address = crate::consent::AddressPolicy::default()
                .normalize(text)
                .unwrap();
            policy
                .gateway_number(&address)
                .map(|a| a.as_str().to_owned())
        };
        for text in [
            "33612345678@sms.example.net",
            "+33612345678@SMS.Example.NET",
            "0612345678@sms.example.net",
        ] {
            assert_eq!(number(text).as_deref(), Some("+33612345678"), "{text}");
        }
        assert_eq!(number("33612345678@example.net"), None);
        assert_eq!(number("ann@sms.example.net"), None);
    }

    #[test]
    fn stored_keys_tell_numbers_from_addresses() {
        assert!(is_phone_number("+33612345678"));
        assert!(!is_phone_number("ann@example.org"));
        assert!(!is_phone_number("+"));
        assert!(!is_phone_number("erased:00ff"));
    }
}
