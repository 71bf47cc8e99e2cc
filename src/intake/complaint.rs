//! Complaints: a feedback-loop report ([`super::arf`]) that one of our messages was
//! reported as spam becomes an opt-out. Someone who presses "report spam" has said no
//! more loudly than someone who unsubscribes, and mailbox providers count every complaint
//! against the sender.
//!
//! Whom to opt out:
//! 1. the recipient named by a valid token in the reported message's `List-Unsubscribe`
//!    (the provider may have redacted every address; the token names the recipient
//!    without one). An expired token still counts: the message was ours.
//! 2. without one, `Original-Rcpt-To` or the reported message's `To`, but only when the
//!    provider did not redact it and the report itself is authenticated: its `From`
//!    domain is one of `[complaints] authenticated_senders` and the receiving MTA's
//!    `Authentication-Results` (from `[intake] trusted_authserv_ids`) show DKIM or DMARC
//!    passing for it. Anyone can write a report; only a loop's signature makes its
//!    address claim believable.
//!
//! Otherwise the report is ignored and logged: a forged report unsubscribes nobody. Only
//! complaint types (`abuse`, `fraud`) record anything; `not-spam`, `virus`,
//! `auth-failure` and the rest are counted and ignored.

use super::{Intake, IntakeError, Outcome, Unsubscription, arf, parse};
use crate::consent::{Change, Channel, ConsentValue, Scope, Source};
use mail_parser::Message;
use std::time::SystemTime;
use tracing::{info, warn};

/// `[complaints]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComplaintsConfig {
    /// Where feedback loops send their reports, lower-cased.
    pub address: String,
    /// What a complaint opts out of.
    pub scope: ComplaintScope,
    /// Domains (and their subdomains) whose DKIM-authenticated reports may name the
    /// recipient without a token.
    pub authenticated_senders: Vec<String>,
}

/// What a complaint opts the recipient out of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComplaintScope {
    /// All marketing (`*`): the default.
    All,
    /// Only the list of the reported message (from its token; all marketing without one).
    List,
}

/// Feedback types that are complaints.
const COMPLAINT_TYPES: [&str; 2] = ["abuse", "fraud"];

impl Intake {
    /// Whether `rcpt` is the complaints address, in any case; when the configured address
    /// has no `+detail` of its own, also with one (one address per feedback loop,
    /// `fbl+yahoo@…`, is common). A configured `fbl+yahoo@…` is matched as written.
    pub fn is_complaints_address(&self, rcpt: &str) -> bool {
        self.config.complaints.as_ref().is_some_and(|c| {
            let bare = rcpt.trim().trim_matches(['<', '>']);
            bare.eq_ignore_ascii_case(&c.address)
                || c.address.rsplit_once('@').is_some_and(|(local, domain)| {
                    !local.contains('+') && parse::is_unsubscribe_address(rcpt, local, domain)
                })
        })
    }

    /// Acts on one report to the complaints address.
    pub(super) async fn complaint(
        &self,
        config: &ComplaintsConfig,
        message: &Message<'_>,
    ) -> Result<Outcome, IntakeError> {
        let report = match arf::parse(message) {
            Ok(report) => report,
            Err(why) => {
                return Ok(ignored(
                    "not-a-report",
                    format!("not a feedback report: {why}"),
                ));
            }
        };
        if !COMPLAINT_TYPES.contains(&report.feedback_type.as_str()) {
            return Ok(ignored(
                "not-a-complaint",
                format!(
                    "feedback type {:?} is not a complaint",
                    report.feedback_type
                ),
            ));
        }
        let provider = message
            .from()
            .and_then(|f| f.first())
            .and_then(|a| a.address())
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, domain)| domain.trim_end_matches('.').to_ascii_lowercase())
            .unwrap_or_default();
        let now = SystemTime::now();
        let evidence = |found_in: &str, token: Option<String>| {
            format!(
                "complaint provider={} feedback-type={} found-in={found_in}{} original-message-id=<{}> arrival-date={:?} user-agent={:?} received={}",
                if provider.is_empty() {
                    "unknown"
                } else {
                    &provider
                },
                report.feedback_type,
                token.map(|t| format!(" token={t}")).unwrap_or_default(),
                report.original_message_id.as_deref().unwrap_or(""),
                report.arrival_date.as_deref().unwrap_or(""),
                report.user_agent.as_deref().unwrap_or(""),
                humantime::format_rfc3339_seconds(now),
            )
        };
        let candidates: Vec<(&'static str, String)> = report
            .list_unsubscribe
            .iter()
            .flat_map(|value| parse::token_candidates(value).collect::<Vec<_>>())
            .map(|token| ("List-Unsubscribe", token))
            .collect();
        if let Some((found_in, target)) = self
            .resolve_all(&candidates, now, 1)
            .await?
            .into_iter()
            .next()
        {
            let label = format!(
                "{}{}",
                target.claims.label(),
                if target.expired { " (expired)" } else { "" }
            );
            let mut change = target.change(
                ConsentValue::No,
                Source::Complaint,
                evidence(found_in, Some(label)),
                now,
            );
            if config.scope == ComplaintScope::All {
                change.scope = Scope::All;
            }
            return self.record_complaint(change, found_in).await;
        }
        let authenticated = !provider.is_empty()
            && config
                .authenticated_senders
                .iter()
                .any(|d| provider == *d || provider.ends_with(&format!(".{d}")))
            && parse::authenticated(message, &provider, &self.config.trusted_authserv_ids);
        let why = if candidates.is_empty() {
            "no token"
        } else {
            "no valid token"
        };
        if !authenticated {
            warn!(%provider, "a complaint with {why} from a sender that is not an authenticated feedback loop was ignored");
            return Ok(ignored(
                "unverified",
                format!("{why}, and the report is not from an authenticated feedback loop"),
            ));
        }
        let (found_in, recipient) = match report
            .original_rcpt_to
            .iter()
            .map(|a| ("Original-Rcpt-To", a))
            .chain(report.original_to.iter().map(|a| ("To", a)))
            .find(|(_, a)| !arf::redacted(a))
        {
            Some(found) => found,
            None => {
                return Ok(ignored(
                    "redacted",
                    format!("{why}, and the provider redacted the recipient"),
                ));
            }
        };
        let Ok(address) = self.addresses.normalize(recipient) else {
            return Ok(ignored(
                "redacted",
                format!("{why}, and the recipient {recipient:?} is not a usable address"),
            ));
        };
        let change = Change {
            address,
            channel: Channel::Email,
            scope: Scope::All,
            value: ConsentValue::No,
            source: Source::Complaint,
            at: now,
            evidence: evidence(found_in, None),
        };
        self.record_complaint(change, found_in).await
    }

    async fn record_complaint(
        &self,
        change: Change,
        found_in: &'static str,
    ) -> Result<Outcome, IntakeError> {
        let recorded = self.store.record(std::slice::from_ref(&change)).await?;
        let recorded = recorded.into_iter().next().ok_or_else(|| {
            IntakeError::Store(crate::store::StoreError::Corrupt(
                "a write was not answered".into(),
            ))
        })?;
        info!(address = %change.address, scope = %change.scope, found_in, ?recorded, "complaint recorded as an opt-out");
        count("recorded");
        Ok(Outcome::Complained(Unsubscription {
            address: change.address,
            scope: change.scope,
            found_in,
            recorded,
        }))
    }
}

/// Counts a report by outcome.
pub(super) fn count(outcome: &'static str) {
    crate::metrics::get()
        .complaints
        .get_or_create(&crate::metrics::Kind { kind: outcome })
        .inc();
}

fn ignored(outcome: &'static str, reason: String) -> Outcome {
    count(outcome);
    info!(%reason, "feedback report ignored; nothing recorded");
    Outcome::Ignored(reason)
}
