//! optout-milter enforces email opt-outs at the mail server.
//!
//! A milter in the MTA's outbound path refuses (or removes) every recipient who opted out of
//! the kind of mail a message is, and lets transactional mail pass. Consent is kept per
//! address, channel and scope with the values of the XDM consent schema, in an embedded
//! SQLite store by default.
//!
//! # Layout
//!
//! Dependencies point downwards: the protocol adapter and the CLI call the domain and the
//! store; the domain knows nothing of milters, SQL or the command line.
//!
//! - [`cli`]: the command line (`serve`, `check-config`, `consent ...`, `ingest`).
//! - [`daemon`]: the daemon assembled once ([`daemon::App`]), its sockets and its run
//!   loop, for `serve`, the tests and the benches alike.
//! - [`milter`]: the milter protocol adapter, its per-connection [`milter::session`] and
//!   the socket it listens on.
//! - [`api`]: the admin API (consent, history, the change feed, the sending decision)
//!   for the systems around the MTA; [`webhooks`]: every change delivered to them.
//! - [`web`]: the one-click endpoint and the landing page; [`lmtp`]: the LMTP server for
//!   unsubscribe mails; [`intake`]: what an unsubscribe mail asks, for the milter, LMTP
//!   and `ingest` alike.
//! - [`config`]: the TOML file, validated at start into typed values.
//! - [`classify`]: is a message marketing, and of which list.
//! - [`consent`]: the consent domain: addresses, values, scopes, the sending decision.
//! - [`store`]: the [`store::ConsentStore`] traits and their SQLite and PostgreSQL
//!   backends.
//! - [`token`]: unsubscribe tokens and their keys; [`headers`]: the header values;
//!   [`unsubscribe`]: minting and honouring tokens against the store.
//! - [`import`]: reading address lists and ESP exports, and writing what they ask;
//!   [`erase`]: erasing an address while keeping its suppression.
//! - [`sms`]: SMS keywords (STOP, START, HELP) from SMS providers, and what each records.
//! - [`secret_file`]: the API's tokens and the SMS providers' credentials, read with
//!   their mode checked.
//! - [`socket`]: socket specifications as Postfix and Sendmail write them; [`identity`]:
//!   which file is at a path (the store's, a socket's).

pub mod api;
pub mod classify;
pub mod cli;
pub mod config;
pub mod consent;
pub mod daemon;
pub mod erase;
pub mod headers;
pub mod identity;
pub mod import;
pub mod intake;
pub mod lmtp;
pub mod metrics;
pub mod milter;
pub mod secret_file;
pub mod sms;
pub mod socket;
pub mod store;
pub mod token;
pub mod unsubscribe;
pub mod web;
pub mod webhooks;

/// `error` and each of its causes, joined by ": ", for a log line: "the store failed" alone
/// tells an operator nothing.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
