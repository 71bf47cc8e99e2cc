//! Unsubscribe mails: what arrives at the `mailto:` address of `List-Unsubscribe`, by the
//! milter (on the receiving side), by LMTP ([`crate::lmtp`]) or by `optout-milter ingest`
//! (Postfix's pipe transport). All hand the raw message to [`Intake::process`].
//!
//! Whom to unsubscribe:
//! 1. the recipient named by a valid token, looked for in the envelope recipient and the
//!    `To` address (`PREFIX+TOKEN@DOMAIN`), then the `Subject`, then the first text part
//!    (an HTML-only body is read as text). An expired token still counts.
//! 2. without a valid token, the `From` address, but only when the receiving MTA's
//!    `Authentication-Results` (from a trusted authserv-id) shows DKIM or DMARC passing in
//!    alignment with it. People write from aliases, so an unauthenticated `From` is never
//!    trusted.
//! 3. otherwise, with a relay configured (`[intake.confirmation]`), the `From` address is
//!    sent a link that unsubscribes it from the landing page: a request is never dropped
//!    in silence, and a forged one unsubscribes nobody. At most one such mail per address
//!    an hour. Without a relay the mail is ignored with a warning, and `check-config`
//!    warns about that configuration.
//!
//! Never an unsubscribe: bounces and reports, auto-replies, and messages larger than
//! `max_bytes`. They are ignored and the reason is logged; nothing is recorded.

pub mod arf;
mod complaint;
mod confirm;
pub mod parse;

pub use complaint::{ComplaintScope, ComplaintsConfig};
pub use confirm::{ConfirmationConfig, Confirmer};

use crate::{
    consent::{Address, AddressPolicy, Change, Channel, ConsentValue, Scope, Source},
    store::{ConsentStore, Recorded, StoreError},
    unsubscribe::{ResolveError, Target, Unsubscribe},
};
use mail_parser::MessageParser;
use std::{sync::Arc, time::SystemTime};
use tracing::{info, warn};

/// What the milter does with an unsubscribe mail after processing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Drop it (or, when it also has other recipients, only remove the unsubscribe address).
    Discard,
    /// Let it go on to the mailbox behind the address.
    Deliver,
}

/// `[intake]`, validated.
#[derive(Clone, Debug)]
pub struct IntakeConfig {
    pub after: After,
    /// Whether the milter looks at mail to the unsubscribe address.
    pub milter: bool,
    /// Where `serve` takes unsubscribe mails over LMTP.
    pub lmtp: Option<crate::socket::SocketSpec>,
    /// The mode and group of a `unix:` LMTP socket.
    pub lmtp_permissions: crate::socket::UnixPermissions,
    pub max_bytes: usize,
    /// The most LMTP connections open at once.
    pub max_connections: usize,
    pub trusted_authserv_ids: Vec<String>,
    pub confirmation: Option<ConfirmationConfig>,
    /// Feedback-loop reports to the complaints address (`[complaints]`).
    pub complaints: Option<ComplaintsConfig>,
}

/// The envelope, as far as it is known.
#[derive(Clone, Debug, Default)]
pub struct Envelope {
    /// `Some("")` is the null sender of bounces; `None` when not known.
    pub sender: Option<String>,
    pub recipients: Vec<String>,
}

/// What processing did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every opt-out the mail asked for, recorded in one transaction; one per distinct
    /// token among the envelope recipients, else one.
    Unsubscribed(Vec<Unsubscription>),
    /// No token and no authenticated sender: the sender was sent a link to confirm
    /// with; nothing recorded yet.
    ConfirmationRequested(Address),
    /// A feedback-loop complaint, recorded as an opt-out.
    Complained(Unsubscription),
    /// Not an unsubscribe request (or not a complaint we can act on); nothing recorded.
    Ignored(String),
}

/// One opt-out an unsubscribe mail asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscription {
    pub address: Address,
    pub scope: Scope,
    /// Where the token or the authenticated sender was found.
    pub found_in: &'static str,
    pub recorded: Recorded,
}

/// Processing failed.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the message cannot be parsed as mail")]
    Unusable,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The link that asks the sender to confirm could not be sent; the MTA keeps the
    /// mail and retries.
    #[error("cannot send the confirmation link")]
    Confirm(#[from] confirm::ConfirmError),
}

impl IntakeError {
    /// Whether the same mail may succeed later: the MTA should keep it and retry (SMTP
    /// 451, exit 75). The alternative is a mail that will never be usable (554, exit 65).
    pub fn is_temporary(&self) -> bool {
        !matches!(self, IntakeError::Unusable)
    }
}

/// The intake: config, store and token codec.
pub struct Intake {
    pub config: IntakeConfig,
    store: Arc<dyn ConsentStore>,
    unsubscribe: Arc<Unsubscribe>,
    addresses: AddressPolicy,
    confirmer: Option<Confirmer>,
    /// When a confirmation link last went to each address, so that a flood of forged
    /// requests cannot make the relay mail anyone more than once an hour. Shared with the
    /// intakes that replace this one at a reload.
    requested: Arc<Requested>,
}

type Requested = std::sync::Mutex<std::collections::HashMap<Address, std::time::Instant>>;

/// The least time between two confirmation links to one address.
const REQUEST_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// Past this many remembered addresses, those older than [`REQUEST_EVERY`] are forgotten.
const REQUESTED_SWEEP: usize = 100_000;

impl Intake {
    pub fn new(
        config: IntakeConfig,
        store: Arc<dyn ConsentStore>,
        unsubscribe: Arc<Unsubscribe>,
        addresses: AddressPolicy,
    ) -> Self {
        let confirmer = config.confirmation.clone().map(Confirmer::new);
        Self {
            config,
            store,
            unsubscribe,
            addresses,
            confirmer,
            requested: Arc::default(),
        }
    }

    /// The intake with new settings (a reload), over the same store, and remembering
    /// which addresses were sent a confirmation link lately.
    pub fn reloaded(
        &self,
        config: IntakeConfig,
        unsubscribe: Arc<Unsubscribe>,
        addresses: AddressPolicy,
    ) -> Self {
        Self {
            requested: self.requested.clone(),
            ..Self::new(config, self.store.clone(), unsubscribe, addresses)
        }
    }

    /// Whether `rcpt` is the unsubscribe address (with or without a token).
    pub fn is_unsubscribe_address(&self, rcpt: &str) -> bool {
        let links = &self.unsubscribe.config.links;
        parse::is_unsubscribe_address(rcpt, &links.mailto_local, &links.mailto_domain)
    }

    /// Whether mail to `rcpt` is the intake's: the unsubscribe or the complaints address.
    pub fn is_intake_address(&self, rcpt: &str) -> bool {
        self.is_unsubscribe_address(rcpt) || self.is_complaints_address(rcpt)
    }

    /// Reads one unsubscribe mail and records what it asks, durably, before returning.
    pub async fn process(&self, envelope: &Envelope, raw: &[u8]) -> Result<Outcome, IntakeError> {
        let result = self.decide(envelope, raw).await;
        let kind = match &result {
            Ok(Outcome::Unsubscribed(_)) => "unsubscribed",
            Ok(Outcome::ConfirmationRequested(_)) => "confirmation-sent",
            Ok(Outcome::Complained(_)) => "complaint",
            Ok(Outcome::Ignored(_)) => "ignored",
            Err(e) if e.is_temporary() => "deferred",
            Err(_) => "unusable",
        };
        let metrics = crate::metrics::get();
        metrics
            .intake
            .get_or_create(&crate::metrics::Kind { kind })
            .inc();
        result
    }

    async fn decide(&self, envelope: &Envelope, raw: &[u8]) -> Result<Outcome, IntakeError> {
        let complaints = self.config.complaints.as_ref().filter(|_| {
            envelope
                .recipients
                .iter()
                .any(|r| self.is_complaints_address(r))
        });
        let raw = match complaints {
            // A report carries the reported message, which may be large; what counts (the
            // report's fields, the reported header) comes first, so a report is read up to
            // max_bytes rather than set aside. (The three ways in stop reading there.)
            Some(_) => &raw[..raw.len().min(self.config.max_bytes)],
            None if raw.len() > self.config.max_bytes => {
                return Ok(ignored(format!(
                    "larger than max_bytes ({} bytes)",
                    raw.len()
                )));
            }
            None => raw,
        };
        let message = MessageParser::default()
            .parse(raw)
            .ok_or(IntakeError::Unusable)?;
        if message.headers().is_empty() {
            return Err(IntakeError::Unusable);
        }
        // A report to the complaints address is a report, not an unsubscribe request
        // (which [`parse::automatic`] would set aside as automatic mail).
        if let Some(complaints) = complaints {
            let result = self.complaint(complaints, &message).await;
            if result.is_err() {
                complaint::count("deferred");
            }
            return result;
        }
        if let Some(reason) = parse::automatic(&message, envelope.sender.as_deref()) {
            return Ok(ignored(reason.to_owned()));
        }
        let links = &self.unsubscribe.config.links;
        let (local, domain) = (links.mailto_local.as_str(), links.mailto_domain.as_str());
        // Each envelope recipient is a request of its own: a mail sent to several
        // unsubscribe+TOKEN addresses asks for every one of them.
        let envelope_tokens: Vec<(&'static str, String)> = envelope
            .recipients
            .iter()
            .filter_map(|rcpt| parse::plus_token(rcpt, local, domain))
            .map(|t| ("envelope recipient", t))
            .collect();
        let mut candidates: Vec<(&'static str, String)> = Vec::new();
        for to in message.to().iter().flat_map(|a| a.iter()) {
            candidates.extend(
                to.address()
                    .and_then(|a| parse::plus_token(a, local, domain))
                    .map(|t| ("To", t)),
            );
        }
        let subject = message.subject().unwrap_or("");
        candidates.extend(parse::token_candidates(subject).map(|t| ("Subject", t)));
        // The first text part; for HTML also its markup, where links keep the token.
        for body in [message.body_text(0), message.body_html(0)]
            .into_iter()
            .flatten()
        {
            candidates.extend(
                parse::token_candidates(&body)
                    .map(|t| ("body", t))
                    .collect::<Vec<_>>(),
            );
        }
        let from = message
            .from()
            .and_then(|f| f.first())
            .and_then(|a| a.address())
            .unwrap_or("");
        let evidence = |found_in: &str, token: Option<String>| {
            format!(
                "mailto found-in={found_in}{} message-id=<{}> from=<{from}> received={}",
                token.map(|t| format!(" token={t}")).unwrap_or_default(),
                message.message_id().unwrap_or(""),
                humantime::format_rfc3339_seconds(SystemTime::now()),
            )
        };
        let now = SystemTime::now();
        let mut targets = self.resolve_all(&envelope_tokens, now, usize::MAX).await?;
        if targets.is_empty() {
            targets = self.resolve_all(&candidates, now, 1).await?;
        }
        if !targets.is_empty() {
            let requests = targets
                .into_iter()
                .map(|(found_in, target)| {
                    let label = format!(
                        "{}{}",
                        target.claims.label(),
                        if target.expired { " (expired)" } else { "" }
                    );
                    let change = target.change(
                        ConsentValue::No,
                        Source::Mailto,
                        evidence(found_in, Some(label)),
                        now,
                    );
                    (change, found_in)
                })
                .collect();
            return self.record(requests).await;
        }
        let candidates = [envelope_tokens, candidates].concat();
        let Ok(address) = self.addresses.normalize(from) else {
            return Ok(ignored("no valid token, and no usable From address".into()));
        };
        if !parse::authenticated(
            &message,
            address.domain(),
            &self.config.trusted_authserv_ids,
        ) {
            let why = if candidates.is_empty() {
                "no token"
            } else {
                "no valid token"
            };
            return self
                .request_confirmation(address, list_in_subject(subject), why)
                .await;
        }
        let change = Change {
            address,
            channel: Channel::Email,
            scope: list_in_subject(subject),
            value: ConsentValue::No,
            source: Source::Mailto,
            at: now,
            evidence: evidence("authenticated From", None),
        };
        self.record(vec![(change, "authenticated From")]).await
    }

    /// Asks `address` to confirm by link, if a relay is configured.
    async fn request_confirmation(
        &self,
        address: Address,
        scope: Scope,
        why: &str,
    ) -> Result<Outcome, IntakeError> {
        let Some(confirmer) = &self.confirmer else {
            warn!(from = %address, "an unsubscribe mail with {why} from an unauthenticated sender was ignored; set [intake.confirmation] so such senders get a link to confirm");
            return Ok(ignored(format!(
                "{why}, and the From address is not authenticated"
            )));
        };
        let now = std::time::Instant::now();
        {
            let mut requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
            if requested.len() >= REQUESTED_SWEEP {
                requested.retain(|_, at| now.duration_since(*at) < REQUEST_EVERY);
            }
            if requested
                .get(&address)
                .is_some_and(|at| now.duration_since(*at) < REQUEST_EVERY)
            {
                return Ok(ignored(format!(
                    "{why}; a confirmation link went to this sender within the hour"
                )));
            }
        }
        let subject = self.store.subject_id(&address, &scope).await?;
        let token = match self.unsubscribe.codec.mint(subject, SystemTime::now()) {
            Ok(token) => token,
            Err(e) => return Ok(ignored(format!("{why}, and no token can be minted: {e}"))),
        };
        let link = self.unsubscribe.config.links.https_uri(&token);
        confirmer.request(&address, &link).await?;
        self.requested
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(address.clone(), now);
        info!(from = %address, %scope, "unsubscribe mail without a token: a link to confirm was sent");
        Ok(Outcome::ConfirmationRequested(address))
    }

    /// The targets of the first `most` distinct valid tokens among `candidates`, each with
    /// where it was found. A store failure fails the whole mail, so the MTA retries it.
    async fn resolve_all(
        &self,
        candidates: &[(&'static str, String)],
        now: SystemTime,
        most: usize,
    ) -> Result<Vec<(&'static str, Target)>, IntakeError> {
        let mut targets: Vec<(&'static str, Target)> = Vec::new();
        for (found_in, candidate) in candidates {
            if targets.len() >= most {
                break;
            }
            match self
                .unsubscribe
                .resolve(self.store.as_ref(), candidate, now)
                .await
            {
                Ok(target) => {
                    let seen = targets
                        .iter()
                        .any(|(_, t)| t.address == target.address && t.scope == target.scope);
                    if !seen {
                        targets.push((found_in, target));
                    }
                }
                Err(ResolveError::Store(e)) => return Err(e.into()),
                Err(_) => continue,
            }
        }
        Ok(targets)
    }

    /// Records every requested opt-out in one durable transaction, then confirms.
    async fn record(&self, requests: Vec<(Change, &'static str)>) -> Result<Outcome, IntakeError> {
        let changes: Vec<Change> = requests.iter().map(|(c, _)| c.clone()).collect();
        let recorded = self.store.record(&changes).await?;
        let mut done = Vec::with_capacity(requests.len());
        for ((change, found_in), recorded) in requests.into_iter().zip(recorded) {
            info!(address = %change.address, scope = %change.scope, found_in, ?recorded, "unsubscribed by mail");
            if let (Some(confirmer), Recorded::Changed) = (&self.confirmer, recorded)
                && let Err(error) = confirmer.send(&change.address).await
            {
                warn!(address = %change.address, error = %crate::error_chain(&error), "cannot send the confirmation");
            }
            done.push(Unsubscription {
                address: change.address,
                scope: change.scope,
                found_in,
                recorded,
            });
        }
        Ok(Outcome::Unsubscribed(done))
    }
}

fn ignored(reason: String) -> Outcome {
    info!(%reason, "not an unsubscribe request; nothing recorded");
    Outcome::Ignored(reason)
}

/// The list of a list-level unsubscribe (`?subject=unsubscribe%20LIST`), else all
/// marketing.
fn list_in_subject(subject: &str) -> Scope {
    let mut words = subject.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some(first), Some(list), None) if first.eq_ignore_ascii_case("unsubscribe") => {
            list.parse().unwrap_or(Scope::All)
        }
        _ => Scope::All,
    }
}
