//! What erasing an address does, for the CLI and the admin API alike (the rules are in
//! [`crate::consent::erasure`]): the address leaves the store, its pseudonym keeps the
//! opt-out; lifting makes the pseudonym's value `u`, which decides nothing.

use crate::{
    consent::{Address, Change, Channel, ConsentValue, Erasure, Scope, Source},
    store::{Records, StoreError},
};
use std::time::SystemTime;

/// What an erasure did.
#[derive(Debug, PartialEq, Eq)]
pub struct Erased {
    /// The pseudonym that keeps the opt-out.
    pub pseudonym: Address,
    /// History entries deleted.
    pub history_deleted: u64,
}

/// Erases `address`, keeping the suppression under its pseudonym; `evidence` (who asked,
/// and how it was verified) stays in the pseudonym's history.
pub async fn erase(
    store: &dyn Records,
    erasure: &Erasure,
    address: &Address,
    evidence: &str,
) -> Result<Erased, StoreError> {
    let pseudonym = erasure.pseudonym(address);
    let suppression = Change {
        address: pseudonym.clone(),
        channel: Channel::Email,
        scope: Scope::All,
        value: ConsentValue::No,
        source: Source::Erasure,
        at: SystemTime::now(),
        evidence: match evidence.trim() {
            "" => "erased on request".to_owned(),
            given => given.to_owned(),
        },
    };
    let history_deleted = store.erase(address, &suppression).await?;
    Ok(Erased {
        pseudonym,
        history_deleted,
    })
}

/// Lifts the erasure of `address`, as `source`; `false` when it was not erased (nothing
/// is written then).
pub async fn lift(
    store: &dyn Records,
    erasure: &Erasure,
    address: &Address,
    source: Source,
    evidence: &str,
) -> Result<bool, StoreError> {
    let pseudonym = erasure.pseudonym(address);
    let erased = store
        .records(&pseudonym)
        .await?
        .iter()
        .any(|r| r.value == ConsentValue::No);
    if !erased {
        return Ok(false);
    }
    let change = Change {
        address: pseudonym,
        channel: Channel::Email,
        scope: Scope::All,
        value: ConsentValue::Unknown,
        source,
        at: SystemTime::now(),
        evidence: match evidence.trim() {
            "" => "erasure lifted".to_owned(),
            given => format!("erasure lifted: {given}"),
        },
    };
    store.record(std::slice::from_ref(&change)).await?;
    Ok(true)
}

/// Whether `address` is erased (its pseudonym holds the opt-out).
pub async fn is_erased(
    store: &dyn Records,
    erasure: &Erasure,
    address: &Address,
) -> Result<bool, StoreError> {
    Ok(store
        .records(&erasure.pseudonym(address))
        .await?
        .iter()
        .any(|r| r.value == ConsentValue::No))
}
