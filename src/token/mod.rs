//! Unsubscribe tokens: short, unforgeable names for "this recipient, this list".
//!
//! # Why the address is not in the token
//!
//! The token must fit the local part of `PREFIX+TOKEN@DOMAIN` (at most 64 octets), survive
//! MTAs that lower-case local parts, and not reveal the address. An address can be 254
//! octets, so it cannot ride inside the token, encrypted or not. Instead the store gives each
//! (address, list) pair a short numeric *subject id* the first time a token is minted for
//! it, and the token carries that id under a MAC. Whoever holds the token can say whom it
//! was for only by asking the store, which also lets an expired token still be honoured.
//!
//! # Layout
//!
//! 21 bytes, written as 34 characters of lower-case base32:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version (2) |
//! | 1 | key id |
//! | 5 | subject id (up to 2^40), permuted under the key, big-endian |
//! | 2 | issue day, days since 2024-01-01, big-endian |
//! | 12 | HMAC-SHA-256 of the 9 bytes above, truncated to 96 bits |
//!
//! Subject ids are handed out in sequence, so in clear they would tell how many tokens
//! were minted and how close two recipients signed up. Version 2 writes the id through a
//! keyed permutation of the 40-bit space ([`permute`]: four Feistel rounds with SipHash,
//! keyed from the token key); the length stays the same. Version 1 tokens (the id in
//! clear) still verify, so links already sent keep working.

pub mod base32;
pub mod keys;

pub use keys::{KeyError, KeySpec, Keyring};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The format minted now; [`VERSION_CLEAR`] is still verified.
const VERSION: u8 = 2;
/// The first format, with the subject id in clear.
const VERSION_CLEAR: u8 = 1;
const HEADER_LEN: usize = 9;
const MAC_LEN: usize = 12;
const TOKEN_BYTES: usize = HEADER_LEN + MAC_LEN;
/// The length of every token in characters.
pub const TOKEN_CHARS: usize = (TOKEN_BYTES * 8).div_ceil(5);
/// The largest subject id a token can carry.
pub const MAX_SUBJECT: u64 = (1 << 40) - 1;
/// The longest mailto prefix that keeps `PREFIX+TOKEN` within the 64-octet local part.
pub const MAX_PREFIX_CHARS: usize = 64 - 1 - TOKEN_CHARS;
/// 2024-01-01 in days since the Unix epoch.
const EPOCH_DAY: u64 = 19_723;
const DAY: u64 = 86_400;

/// What an authentic token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claims {
    pub key_id: u8,
    pub subject: u64,
    /// Days since 2024-01-01 on which the token was minted.
    pub issued_day: u16,
}

/// A verified token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    pub claims: Claims,
    /// Older than the configured lifetime. Still authentic: an opt-out through it must be
    /// honoured, but it may not undo one.
    pub expired: bool,
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a token: wrong length or characters")]
    Malformed,
    #[error("unknown token format version {0}")]
    Version(u8),
    #[error("token signed with unknown key id {0}")]
    UnknownKey(u8),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("subject id {0} is too large for a token")]
    SubjectTooLarge(u64),
}

/// Mints and verifies tokens with a keyring and a lifetime.
pub struct TokenCodec {
    keys: Keyring,
    lifetime: Duration,
    /// The [`permute`] key of each key id, derived once.
    permutation: Box<[Option<PermutationKey>; 256]>,
}

/// The 128-bit SipHash key of [`permute`].
type PermutationKey = [u8; 16];

impl Claims {
    /// When the token was minted (start of its day, UTC).
    pub fn issued(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs((EPOCH_DAY + u64::from(self.issued_day)) * DAY)
    }

    /// A short label for logs and evidence: enough to find the token again, not to use it.
    pub fn label(&self) -> String {
        format!("k{}/s{}/d{}", self.key_id, self.subject, self.issued_day)
    }
}

impl TokenCodec {
    pub fn new(keys: Keyring, lifetime: Duration) -> Self {
        let permutation = Box::new(std::array::from_fn(|id| {
            let id = u8::try_from(id).unwrap_or_else(|_| unreachable!());
            keys.get(id).map(permutation_key)
        }));
        Self {
            keys,
            lifetime,
            permutation,
        }
    }

    fn permutation_key(&self, key_id: u8) -> PermutationKey {
        // Every key id in the keyring has one; others never reach here.
        self.permutation[usize::from(key_id)].unwrap_or_default()
    }

    /// A token for `subject`, dated `now`.
    pub fn mint(&self, subject: u64, now: SystemTime) -> Result<String, TokenError> {
        if subject > MAX_SUBJECT {
            return Err(TokenError::SubjectTooLarge(subject));
        }
        let (key_id, secret) = self.keys.signing();
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[0] = VERSION;
        bytes[1] = key_id;
        let hidden = permute(&self.permutation_key(key_id), subject, Direction::Forward);
        bytes[2..7].copy_from_slice(&hidden.to_be_bytes()[3..]);
        bytes[7..9].copy_from_slice(&day_of(now).to_be_bytes());
        let tag = mac(secret, &bytes[..HEADER_LEN]).finalize().into_bytes();
        bytes[HEADER_LEN..].copy_from_slice(&tag[..MAC_LEN]);
        Ok(base32::encode(&bytes))
    }

    /// Checks `token` and says what it claims and whether it has expired at `now`.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Verified, TokenError> {
        if token.len() != TOKEN_CHARS {
            return Err(TokenError::Malformed);
        }
        let bytes = base32::decode(token).ok_or(TokenError::Malformed)?;
        if bytes.len() != TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        if bytes[0] != VERSION && bytes[0] != VERSION_CLEAR {
            return Err(TokenError::Version(bytes[0]));
        }
        let secret = self
            .keys
            .get(bytes[1])
            .ok_or(TokenError::UnknownKey(bytes[1]))?;
        mac(secret, &bytes[..HEADER_LEN])
            .verify_truncated_left(&bytes[HEADER_LEN..])
            .map_err(|_| TokenError::BadSignature)?;
        let mut field = [0u8; 8];
        field[3..].copy_from_slice(&bytes[2..7]);
        let field = u64::from_be_bytes(field);
        let subject = match bytes[0] {
            VERSION_CLEAR => field,
            _ => permute(&self.permutation_key(bytes[1]), field, Direction::Backward),
        };
        let claims = Claims {
            key_id: bytes[1],
            subject,
            issued_day: u16::from_be_bytes([bytes[7], bytes[8]]),
        };
        let age = now.duration_since(claims.issued()).unwrap_or_default();
        // A token lives until the end of its lifetime counted from the end of its day.
        let expired = age > self.lifetime + Duration::from_secs(DAY);
        Ok(Verified { claims, expired })
    }
}

/// Which way [`permute`] goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Forward,
    Backward,
}

/// A permutation of the 40-bit numbers, keyed by `secret`: a balanced Feistel network of
/// four rounds over two 20-bit halves, each round's function a SipHash-1-3 of the round
/// number and the half, under a 128-bit key derived from the token key with HMAC
/// ([`permutation_key`]). Four rounds of a pseudo-random function give a pseudo-random
/// permutation (Luby-Rackoff); nobody without the key can tell a token's id, or the order
/// of two ids.
fn permute(key: &PermutationKey, value: u64, direction: Direction) -> u64 {
    use std::hash::Hasher;
    const HALF: u32 = 20;
    const MASK: u64 = (1 << HALF) - 1;
    let round = |i: u8, half: u64| {
        let mut h = siphasher::sip::SipHasher13::new_with_key(key);
        h.write_u8(i);
        h.write_u64(half);
        h.finish() & MASK
    };
    let (mut left, mut right) = ((value >> HALF) & MASK, value & MASK);
    match direction {
        Direction::Forward => {
            for i in 0..4 {
                (left, right) = (right, left ^ round(i, right));
            }
        }
        Direction::Backward => {
            for i in (0..4).rev() {
                (left, right) = (right ^ round(i, left), left);
            }
        }
    }
    (left << HALF) | right
}

/// The [`permute`] key of a token key: separate from the MAC's use of it.
fn permutation_key(secret: &[u8]) -> PermutationKey {
    let derived = mac(secret, b"optout-milter subject permutation")
        .finalize()
        .into_bytes();
    let mut key = [0u8; 16];
    key.copy_from_slice(&derived[..16]);
    key
}

fn mac(secret: &[u8], data: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac
}

fn day_of(t: SystemTime) -> u16 {
    let days = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / DAY);
    u16::try_from(days.saturating_sub(EPOCH_DAY)).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAYS: u64 = 86_400;

    fn codec(lifetime_days: u64) -> TokenCodec {
        let keys = Keyring::from_secrets(2, [(1, vec![1; 32]), (2, vec![2; 32])]);
        TokenCodec::new(keys, Duration::from_secs(lifetime_days * DAYS))
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_790_000_000)
    }

    #[test]
    fn subject_ids_are_opaque_and_old_tokens_still_verify() {
        // Regression (issue 11, item 12): tokens carried the subject id in clear and in
        // sequence.
        let c = codec(60);
        let fields: Vec<u64> = (1..=1000u64)
            .map(|id| {
                let token = c.mint(id, now()).unwrap();
                assert_eq!(c.verify(&token, now()).unwrap().claims.subject, id);
                let bytes = base32::decode(&token).unwrap();
                let mut field = [0u8; 8];
                field[3..].copy_from_slice(&bytes[2..7]);
                u64::from_be_bytes(field)
            })
            .collect();
        assert!(
            fields.iter().zip(1..).all(|(f, id)| *f != id),
            "an id in clear"
        );
        let ascending = fields.windows(2).filter(|w| w[0] < w[1]).count();
        assert!((350..650).contains(&ascending), "{ascending} of 999 ascend");
        for value in [0, 1, MAX_SUBJECT, 0x12_3456_789a] {
            let key = permutation_key(&[9; 32]);
            let there = permute(&key, value, Direction::Forward);
            assert!(there <= MAX_SUBJECT);
            assert_eq!(permute(&key, there, Direction::Backward), value);
        }
        // A version 1 token, made as before: the id in clear.
        let (key_id, secret) = c.keys.signing();
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[0] = VERSION_CLEAR;
        bytes[1] = key_id;
        bytes[2..7].copy_from_slice(&77u64.to_be_bytes()[3..]);
        bytes[7..9].copy_from_slice(&day_of(now()).to_be_bytes());
        let tag = mac(secret, &bytes[..HEADER_LEN]).finalize().into_bytes();
        bytes[HEADER_LEN..].copy_from_slice(&tag[..MAC_LEN]);
        let old = base32::encode(&bytes);
        assert_eq!(c.verify(&old, now()).unwrap().claims.subject, 77);
    }

    #[test]
    fn round_trip_with_fixed_length() {
        let c = codec(60);
        let token = c.mint(123_456_789, now()).unwrap();
        assert_eq!(token.len(), TOKEN_CHARS);
        assert_eq!(TOKEN_CHARS, 34);
        let v = c.verify(&token, now()).unwrap();
        assert_eq!(v.claims.subject, 123_456_789);
        assert_eq!(v.claims.key_id, 2);
        assert!(!v.expired);
        assert!(v.claims.issued() <= now());
        assert!(now().duration_since(v.claims.issued()).unwrap() < Duration::from_secs(DAYS));
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        let c = codec(60);
        let token = c.mint(42, now()).unwrap();
        for i in 0..token.len() {
            for replacement in base32_chars() {
                let mut changed = token.clone().into_bytes();
                if changed[i] == replacement {
                    continue;
                }
                changed[i] = replacement;
                let changed = String::from_utf8(changed).unwrap();
                assert!(c.verify(&changed, now()).is_err(), "{changed} verified");
            }
        }
    }

    fn base32_chars() -> impl Iterator<Item = u8> {
        (b'a'..=b'z').chain(b'2'..=b'7')
    }

    #[test]
    fn every_single_byte_change_is_rejected() {
        let c = codec(60);
        let bytes = base32::decode(&c.mint(42, now()).unwrap()).unwrap();
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut changed = bytes.clone();
                changed[i] ^= 1 << bit;
                assert!(
                    c.verify(&base32::encode(&changed), now()).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn upper_case_tokens_verify() {
        let c = codec(60);
        let token = c.mint(7, now()).unwrap();
        assert_eq!(
            c.verify(&token.to_uppercase(), now())
                .unwrap()
                .claims
                .subject,
            7
        );
    }

    #[test]
    fn wrong_key_and_rotation() {
        let old = TokenCodec::new(
            Keyring::from_secrets(1, [(1, vec![1; 32])]),
            Duration::from_secs(60 * DAYS),
        );
        let token = old.mint(9, now()).unwrap();
        // After rotation key 2 signs, key 1 still verifies.
        assert_eq!(codec(60).verify(&token, now()).unwrap().claims.key_id, 1);
        // A keyring without key 1 refuses it.
        let other = TokenCodec::new(
            Keyring::from_secrets(2, [(2, vec![2; 32])]),
            Duration::from_secs(DAYS),
        );
        assert_eq!(other.verify(&token, now()), Err(TokenError::UnknownKey(1)));
        // Same key id, different secret: the signature fails.
        let forged = TokenCodec::new(
            Keyring::from_secrets(1, [(1, vec![9; 32])]),
            Duration::from_secs(DAYS),
        );
        assert_eq!(forged.verify(&token, now()), Err(TokenError::BadSignature));
    }

    #[test]
    fn expiry_is_reported_but_the_claims_survive() {
        let c = codec(60);
        let token = c.mint(5, now()).unwrap();
        let later = |days| now() + Duration::from_secs(days * DAYS);
        assert!(!c.verify(&token, later(60)).unwrap().expired);
        let v = c.verify(&token, later(62)).unwrap();
        assert!(v.expired);
        assert_eq!(v.claims.subject, 5);
    }

    #[test]
    fn malformed_tokens_and_oversized_subjects() {
        let c = codec(60);
        for bad in ["", "abc", &"a".repeat(34), &"!".repeat(34), &"a".repeat(35)] {
            assert!(c.verify(bad, now()).is_err(), "{bad:?}");
        }
        assert_eq!(
            c.mint(MAX_SUBJECT + 1, now()),
            Err(TokenError::SubjectTooLarge(MAX_SUBJECT + 1))
        );
        assert!(c.mint(MAX_SUBJECT, now()).is_ok());
    }

    #[test]
    fn the_mailto_local_part_fits_64_octets_with_the_longest_prefix() {
        let local = format!(
            "{}+{}",
            "p".repeat(crate::token::MAX_PREFIX_CHARS),
            "a".repeat(TOKEN_CHARS)
        );
        assert!(local.len() <= 64);
    }
}
