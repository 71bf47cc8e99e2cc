//! Turning the rows of an imported file into durable changes: what `consent import` and
//! the admin API's import share, so a file means the same whichever way it comes in.
//!
//! Rows are written in batches of [`BATCH`] (large enough to be fast, small enough that
//! a failure loses little work); a row that cannot be used is reported with its line
//! number and the others still go in.

use super::{Item, Purpose, Table};
use crate::{
    consent::{AddressPolicy, Change, Channel, ConsentValue, Erasure, Scope, Source},
    store::{Recorded, Records, StoreError},
};
use std::time::SystemTime;

/// Rows written per transaction.
pub const BATCH: usize = 5_000;

/// What an import asks for, beyond the file.
#[derive(Clone, Debug)]
pub struct Request {
    /// The value for rows that are bare addresses; `n` when not given.
    pub value: Option<ConsentValue>,
    /// The scope for rows that are bare addresses; `*` when not given.
    pub scope: Option<Scope>,
    /// Kept with every change made from a bare address.
    pub evidence: String,
}

impl Request {
    /// How the file's rows are to be read: a status column filters opt-outs.
    pub fn purpose(&self) -> Purpose {
        match self.value.unwrap_or(ConsentValue::No) {
            ConsentValue::No | ConsentValue::DefaultNo => Purpose::OptOuts,
            _ => Purpose::Other,
        }
    }
}

/// What an import did, row by row.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub changed: usize,
    pub unchanged: usize,
    /// Rows whose status is not an opt-out.
    pub skipped: usize,
    /// Rows that could not be used: line number and why.
    pub bad: Vec<(u64, String)>,
    /// Rows whose address is erased (their value is recorded; mail stays refused).
    pub erased: usize,
    /// Rows read.
    pub total: usize,
}

impl Tally {
    fn count(&mut self, outcomes: Vec<Recorded>) {
        for o in outcomes {
            match o {
                Recorded::Changed => self.changed += 1,
                Recorded::Unchanged => self.unchanged += 1,
            }
        }
    }
}

/// Why an import wrote nothing more.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "a file of `consent export` carries each row's value and scope; do not give a value or scope with it"
    )]
    ValueForExport,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes the rows of `table` to `store`. Every batch written before an error stays.
pub async fn apply(
    table: Table,
    request: Request,
    addresses: &AddressPolicy,
    erasure: Option<&Erasure>,
    store: &dyn Records,
) -> Result<Tally, ApplyError> {
    if table.exported && (request.value.is_some() || request.scope.is_some()) {
        return Err(ApplyError::ValueForExport);
    }
    let value = request.value.unwrap_or(ConsentValue::No);
    let scope = request.scope.unwrap_or(Scope::All);
    let now = SystemTime::now();
    let mut tally = Tally {
        total: table.rows.len(),
        ..Tally::default()
    };
    let mut batch = Vec::with_capacity(BATCH.min(table.rows.len()));
    for (line, row) in table.rows {
        let change = row.and_then(|item| match item {
            Item::Address(text) => Ok(Some(Change {
                address: addresses.normalize(&text).map_err(|e| e.to_string())?,
                channel: Channel::Email,
                scope: scope.clone(),
                value,
                source: Source::Import,
                at: now,
                evidence: request.evidence.clone(),
            })),
            Item::Record(r) => Ok(Some(Change {
                address: addresses.normalize(&r.address).map_err(|e| e.to_string())?,
                channel: r.channel,
                scope: r.scope,
                value: r.value,
                source: r.source,
                at: r.at,
                evidence: r.evidence,
            })),
            Item::Skipped(_) => Ok(None),
        });
        match change {
            Ok(Some(change)) => {
                if let Some(erasure) = erasure
                    && crate::erase::is_erased(store, erasure, &change.address).await?
                {
                    tally.erased += 1;
                }
                batch.push(change);
            }
            Ok(None) => tally.skipped += 1,
            Err(error) => tally.bad.push((line, error)),
        }
        if batch.len() == BATCH {
            tally.count(store.record(&batch).await?);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        tally.count(store.record(&batch).await?);
    }
    Ok(tally)
}
