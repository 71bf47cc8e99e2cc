//! The API's JSON: what requests carry and responses return, with the schemas the OpenAPI
//! document is generated from. Values are the store's own spellings (channel `email`,
//! scope `*` or a list id, values `y`, `n`, `dy` …), times RFC 3339 in UTC.

use crate::consent::{ConsentRecord, HistoryEntry};
use serde::{Deserialize, Serialize};
use std::time::SystemTime;
use utoipa::{IntoParams, ToSchema};

/// An error: what was wrong, in a sentence.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// The current consent of one address for one channel and scope.
#[derive(Debug, Serialize, ToSchema)]
pub struct Record {
    #[schema(example = "ann@example.org")]
    pub address: String,
    /// `email` (or `sms`).
    #[schema(example = "email")]
    pub channel: String,
    /// `*` (all marketing) or a list id.
    #[schema(example = "*")]
    pub scope: String,
    /// `y`, `n`, `p`, `u`, `dy`, `dn`, or a legal basis (`LI`, `CT`, `CP`, `VI`, `PI`).
    #[schema(example = "n")]
    pub value: String,
    /// Where the change came from: `one-click`, `mailto`, `api`, `cli`, `import`,
    /// `sms-keyword`, `web`, `complaint`.
    #[schema(example = "one-click")]
    pub source: String,
    #[schema(example = "2026-11-29T20:00:00.000Z")]
    pub updated_at: String,
    pub evidence: String,
}

impl From<&ConsentRecord> for Record {
    fn from(r: &ConsentRecord) -> Self {
        Self {
            address: r.address.as_str().to_owned(),
            channel: r.channel.as_str().to_owned(),
            scope: r.scope.as_str().to_owned(),
            value: r.value.as_str().to_owned(),
            source: r.source.as_str().to_owned(),
            updated_at: timestamp(r.updated_at),
            evidence: r.evidence.clone(),
        }
    }
}

/// One change, as the history and the change feed keep it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Entry {
    /// The history row's id: unique, and the idempotency key of the change.
    pub id: i64,
    pub address: String,
    pub channel: String,
    pub scope: String,
    /// The value this change set; empty when it removed the record (an undo back to no
    /// record: the default applies again).
    pub value: String,
    pub source: String,
    /// When it was recorded.
    pub at: String,
    pub evidence: String,
}

impl From<&HistoryEntry> for Entry {
    fn from(e: &HistoryEntry) -> Self {
        let c = &e.change;
        Self {
            id: e.id,
            address: c.address.as_str().to_owned(),
            channel: c.channel.as_str().to_owned(),
            scope: c.scope.as_str().to_owned(),
            value: match e.emptied {
                true => String::new(),
                false => c.value.as_str().to_owned(),
            },
            source: c.source.as_str().to_owned(),
            at: timestamp(c.at),
            evidence: c.evidence.clone(),
        }
    }
}

/// Every current record of an address.
#[derive(Debug, Serialize, ToSchema)]
pub struct AddressRecords {
    /// The address as it is stored (normalized).
    pub address: String,
    pub records: Vec<Record>,
    /// What applies where no record decides: `y` (mail is allowed) or `n` (opt-in only).
    pub default: String,
    /// The address was erased: mail to it is refused whatever its records say.
    pub erased: bool,
}

/// What an erasure did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureResult {
    pub address: String,
    /// History entries deleted.
    pub history_deleted: u64,
    /// The pseudonym that keeps the opt-out (it names no one without the erasure key).
    pub kept_as: String,
}

/// Why an address is erased or its erasure lifted.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// Who asked, and how it was verified.
    #[serde(default)]
    pub evidence: String,
}

/// A change to record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetConsent {
    /// `email` when not given.
    #[serde(default = "email")]
    #[schema(default = "email")]
    pub channel: String,
    /// `*` (all marketing, the default) or a list id.
    #[serde(default = "all")]
    #[schema(default = "*")]
    pub scope: String,
    /// `n` to opt out, `y` to opt in, or another value of the consent schema.
    #[schema(example = "n")]
    pub value: String,
    /// Who asked, and how it was verified; kept in the history with the token's name.
    #[serde(default)]
    #[schema(example = "unsubscribed in the CRM by ticket 4711")]
    pub evidence: String,
}

fn email() -> String {
    "email".into()
}

fn all() -> String {
    "*".into()
}

/// What a write did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SetResult {
    /// `changed`, or `unchanged` when the value was already recorded.
    #[schema(example = "changed")]
    pub outcome: String,
    pub record: Record,
}

/// The history of an address, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    pub address: String,
    pub entries: Vec<Entry>,
}

/// A page of records, in key order.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    pub records: Vec<Record>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Where a page starts, and how long it is.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next` of the previous page; from the start when absent.
    pub after: Option<String>,
    /// At most this many (1 to 1000; 100 when absent).
    pub limit: Option<u32>,
}

/// A page of the change feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Changes {
    /// Changes in the order they were committed (for one key, always).
    pub changes: Vec<Entry>,
    /// Pass as `after` for what follows; when `changes` is empty, ask again later with
    /// it (it may have moved on even then: never past a change not yet read).
    pub next: String,
}

/// The sending decision's question.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecisionQuery {
    /// `email` when absent.
    pub channel: Option<String>,
    pub address: String,
    /// The message's list id, or `*` (the default) for marketing of no particular list.
    pub list: Option<String>,
}

/// May a marketing message go to this address, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionResult {
    pub allowed: bool,
    /// `opted-out` (a recorded `n` or `dn` at the list or at `*`), `no-consent` (opt-in
    /// only and nothing allows it), `consent` (a recorded yes or legal basis) or
    /// `default` (nothing recorded decides, and the default allows).
    #[schema(example = "opted-out")]
    pub reason: String,
    /// The address the decision was made on (normalized).
    pub address: String,
    /// For `opted-out`: the address whose record refused it (the address itself, or a
    /// form the MTA would deliver to the same mailbox), its scope and value.
    pub opted_out: Option<OptedOut>,
}

/// The record that refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptedOut {
    pub scope: String,
    pub value: String,
}

/// What an import should do with rows that are bare addresses.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// The value for bare addresses (`n` when absent); not with a `consent export` file.
    pub value: Option<String>,
    /// The scope for bare addresses (`*` when absent); not with a `consent export` file.
    pub scope: Option<String>,
    /// Kept with every change.
    pub evidence: Option<String>,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    pub changed: usize,
    pub unchanged: usize,
    /// Rows whose status column is not an opt-out.
    pub skipped: usize,
    /// Rows that could not be used; the others were imported.
    pub bad: Vec<BadRow>,
    /// Rows whose address is erased: recorded, and still refused until the erasure is
    /// lifted.
    pub erased: usize,
    /// How the file was read (encoding, columns).
    pub notes: Vec<String>,
}

/// A row that could not be used.
#[derive(Debug, Serialize, ToSchema)]
pub struct BadRow {
    pub line: u64,
    pub error: String,
}

/// RFC 3339 in UTC with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}
