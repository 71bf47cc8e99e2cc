//! The consent domain: who agreed to which kind of mail, and whether a message may go to
//! them.
//!
//! The model follows the consent schema of Adobe Journey Optimizer (XDM): a record per
//! normalized address, channel and scope holds one value of the XDM choice set. Nothing here
//! knows about milters, HTTP or SQL; the protocol adapters and the store depend on this
//! module, never the other way round.

pub mod address;
pub mod decision;
pub mod erasure;
pub mod phone;
pub mod record;
pub mod value;

pub use address::{Address, AddressError, AddressPolicy, without_source_route};
pub use decision::{BlockReason, ConsentPolicy, Decision, DefaultConsent};
pub use erasure::Erasure;
pub use phone::{PhoneError, PhonePolicy};
pub use record::{Change, Channel, ConsentRecord, HistoryEntry, Scope, ScopeError, Source};
pub use value::{ConsentValue, Effect};

/// Why a text cannot be the key of a record on its channel.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(transparent)]
    Phone(#[from] PhoneError),
}

/// The key of a record on `channel`: a normalized email address, or a phone number in
/// E.164 for `sms`.
pub fn key(
    channel: Channel,
    text: &str,
    addresses: &AddressPolicy,
    phones: &PhonePolicy,
) -> Result<Address, KeyError> {
    match channel {
        Channel::Email => Ok(addresses.normalize(text)?),
        Channel::Sms => Ok(phones.normalize(text)?),
    }
}

/// The key of whoever `text` names, on whichever channel it suits: an email address when
/// it has an `@`, else a phone number. For reads, which cover every channel.
pub fn any_key(
    text: &str,
    addresses: &AddressPolicy,
    phones: &PhonePolicy,
) -> Result<Address, KeyError> {
    let channel = match text.contains('@') {
        true => Channel::Email,
        false => Channel::Sms,
    };
    key(channel, text, addresses, phones)
}
