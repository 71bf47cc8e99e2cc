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
pub mod record;
pub mod value;

pub use address::{Address, AddressError, AddressPolicy, without_source_route};
pub use decision::{BlockReason, ConsentPolicy, Decision, DefaultConsent};
pub use erasure::Erasure;
pub use record::{Change, Channel, ConsentRecord, HistoryEntry, Scope, ScopeError, Source};
pub use value::{ConsentValue, Effect};
