//! Erasure that keeps the suppression.
//!
//! A person may ask to be forgotten (GDPR art. 17) and still must not be mailed again:
//! the suppression is the one thing that protects them. So an erased address leaves the
//! store entirely (current state, history, token subjects) and a keyed pseudonym takes
//! its place: `erased:` and the first 16 bytes of HMAC-SHA256 under a key of its own
//! (never a token key), in hex, with an opt-out from all marketing. The pseudonym cannot
//! be turned back into the address without the key, yet every decision about the address
//! computes it and finds the opt-out, so a later message is still refused and a later
//! import of `y` for the address does not bring consent back. An operator lifts it
//! explicitly (the pseudonym's value becomes `u`, which decides nothing).
//!
//! The trade-off: whoever holds the key and a list of candidate addresses can tell which
//! of them were erased; keep the key as carefully as the store.

use super::Address;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// What every pseudonym starts with; no address can (it has no `@`).
pub const PREFIX: &str = "erased:";

/// The erasure key.
pub struct Erasure {
    key: Vec<u8>,
}

impl Erasure {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// The pseudonym that stands for `address` once it is erased.
    pub fn pseudonym(&self, address: &Address) -> Address {
        use std::fmt::Write;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(address.as_str().as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut text = String::with_capacity(PREFIX.len() + 32);
        text.push_str(PREFIX);
        for byte in &digest[..16] {
            let _ = write!(text, "{byte:02x}");
        }
        Address::from_stored(text)
    }
}

/// Whether a stored address is an erasure's pseudonym.
pub fn is_pseudonym(address: &str) -> bool {
    address.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::AddressPolicy;

    #[test]
    fn pseudonyms_are_keyed_stable_and_not_addresses() {
        let ann = AddressPolicy::default()
            .normalize("ann@example.org")
            .unwrap();
        let bob = AddressPolicy::default()
            .normalize("bob@example.org")
            .unwrap();
        let one = Erasure::new(vec![1; 32]);
        let other = Erasure::new(vec![2; 32]);
        let p = one.pseudonym(&ann);
        assert_eq!(p, one.pseudonym(&ann));
        assert_ne!(p, one.pseudonym(&bob));
        assert_ne!(p, other.pseudonym(&ann));
        assert!(is_pseudonym(p.as_str()) && p.as_str().len() == PREFIX.len() + 32);
        assert!(!p.as_str().contains("ann"));
        assert!(AddressPolicy::default().normalize(p.as_str()).is_err());
    }
}
