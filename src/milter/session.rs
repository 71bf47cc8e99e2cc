//! One MTA connection and the message in it: what is known so far, and every decision.
//!
//! The callbacks feed plain values in and carry the outcomes back to the MTA; this file
//! holds no protocol types, so the rules read in one place:
//!
//! - A sender rule makes the message marketing at MAIL FROM. Over SMTP each opted-out
//!   recipient is then refused at RCPT with `550 5.7.1`, and the others go on.
//! - The list header makes it marketing only after the headers, so opted-out recipients
//!   are removed at end of message; if none remain the message is rejected or discarded.
//! - Local submissions (Postfix `non_smtpd_milters`: the `sendmail` command and pickup)
//!   must not see a RCPT reject: Postfix would call it a configuration error and keep the
//!   message in the queue. Postfix emulates SMTP for them with client port 0 (and a real
//!   client never has port 0), so for those every refusal becomes a removal at end of
//!   message.
//! - The list header is removed from every message before it leaves.
//! - Marketing mail left with one recipient gets that recipient's `List-Unsubscribe` and
//!   `List-Unsubscribe-Post`; with several, the configured policy applies, since one
//!   header cannot name several recipients.
//! - Mail to the unsubscribe address (when the milter takes it) is read whole, handed to
//!   the intake at end of message, and then discarded or delivered as configured.
//! - Log lines carry the connection's span (client, queue id: see the callbacks), so no
//!   function here needs the queue id.
//! - When the store fails, the answer is a temporary failure (or, if the operator chose
//!   fail-open, acceptance); never a silent delivery to an opted-out address.
//! - A recipient of marketing mail whose address cannot be parsed cannot be checked, so it
//!   is refused (`550 5.1.3` at RCPT, or removed at end of message). Not a temporary
//!   failure: the same bytes will not parse tomorrow, and the MTA would retry for days.
//! - A recipient is refused when its address or any alias of it (the percent hack, a bang
//!   path: [`Address::aliases`]) has opted out, since the MTA may deliver to either.

use super::Milter;
use crate::{
    config::{AllOptedOut, ExistingHeader, MultipleRecipients, OnStoreError},
    consent::{Address, BlockReason, Channel, Decision, Scope, without_source_route},
    headers::{LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST, ONE_CLICK},
    intake::{After, Envelope, IntakeError},
    metrics,
    store::StoreError,
    unsubscribe::Unsubscribe,
};
use std::time::SystemTime;
use tracing::{error, info, warn};

/// The per-connection state.
#[derive(Debug, Default)]
pub struct Session {
    /// The MTA emulates SMTP for a local submission (see the module docs).
    pub local_submission: bool,
    message: Message,
}

/// What is known of the current message.
#[derive(Debug, Default)]
struct Message {
    /// The envelope sender as the MTA sent it.
    sender: String,
    sender_list: Option<Scope>,
    recipients: Vec<Recipient>,
    header_list: Option<Scope>,
    list_headers: i32,
    /// Copies of `List-Unsubscribe` and `List-Unsubscribe-Post` the message came with.
    unsubscribe_headers: i32,
    post_headers: i32,
    /// Recipients that are the unsubscribe address; the message is then read whole.
    intake_rcpts: Vec<String>,
    /// The headers and body of an unsubscribe mail, as the intake will read them.
    raw_headers: Vec<u8>,
    body: Vec<u8>,
}

/// An accepted recipient.
#[derive(Debug)]
struct Recipient {
    /// As the MTA sent it less any source route: what it expects back when the recipient
    /// is removed.
    raw: String,
    /// `None` when the address cannot be parsed: it cannot be checked, so marketing mail
    /// does not go to it.
    address: Option<Address>,
    /// The list it was already checked for at RCPT.
    checked_for: Option<Scope>,
}

/// The answer to one RCPT.
#[derive(Debug, PartialEq, Eq)]
pub enum RcptVerdict {
    Continue,
    /// `550` with this enhanced status code and text.
    Refuse {
        xcode: &'static str,
        text: String,
    },
    /// `451 4.3.0`: the store could not answer.
    Tempfail,
}

/// The answer at end of message.
#[derive(Debug, PartialEq, Eq)]
pub enum EomVerdict {
    Continue,
    /// `550` with this enhanced status code and text.
    Reject {
        xcode: &'static str,
        text: String,
    },
    Discard,
    /// `451 4.3.0`: the store could not answer.
    Tempfail,
}

/// The changes to make at end of message, in this order.
#[derive(Debug, PartialEq, Eq)]
pub struct EomPlan {
    /// Headers to delete: every copy of each name, counted as the MTA sent them.
    pub delete_headers: Vec<(String, i32)>,
    /// Recipients to remove, as the MTA sent them.
    pub remove: Vec<String>,
    /// Headers to add.
    pub add_headers: Vec<(&'static str, String)>,
    pub verdict: EomVerdict,
}

/// The store failed or did not answer in time.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store did not answer within the store timeout")]
    Timeout,
}

impl Session {
    /// MAIL FROM: a new message begins.
    pub fn mail(&mut self, milter: &Milter, sender: &str) {
        let config = &milter.config;
        let sender_list = config
            .addresses
            .normalize(sender)
            .ok()
            .and_then(|a| config.classifier.by_sender(&a).cloned());
        self.message = Message {
            sender: sender.to_owned(),
            sender_list,
            ..Message::default()
        };
    }

    /// RCPT TO: refuse the recipient now when the list is known and the MTA allows it.
    pub async fn rcpt(&mut self, milter: &Milter, rcpt: &str) -> RcptVerdict {
        if milter
            .intake
            .as_ref()
            .is_some_and(|i| i.is_intake_address(rcpt))
        {
            self.message.intake_rcpts.push(rcpt.to_owned());
            return RcptVerdict::Continue;
        }
        let address = match milter.config.addresses.normalize(rcpt) {
            Ok(address) => Some(address),
            Err(error) => {
                warn!(rcpt, error = %crate::error_chain(&error), "recipient address cannot be parsed");
                None
            }
        };
        let mut recipient = Recipient {
            raw: without_source_route(rcpt),
            address,
            checked_for: None,
        };
        if let (Some(list), false) = (&self.message.sender_list, self.local_submission) {
            let Some(address) = &recipient.address else {
                info!(rcpt, %list, "recipient refused: its address cannot be checked");
                count_recipient("refused", list, "unparseable");
                return RcptVerdict::Refuse {
                    xcode: "5.1.3",
                    text: UNCHECKABLE.into(),
                };
            };
            match decide(milter, address, list).await {
                Ok(Decision::Allow) => recipient.checked_for = Some(list.clone()),
                Ok(Decision::Block(reason)) => {
                    info!(rcpt = %address, %list, reason = %describe(&reason), "recipient refused");
                    count_recipient("refused", list, reason_label(&reason));
                    return RcptVerdict::Refuse {
                        xcode: "5.7.1",
                        text: refusal_text(address, list),
                    };
                }
                Err(error) => match milter.config.milter.on_store_error {
                    OnStoreError::Tempfail => {
                        warn!(rcpt = %address, error = %crate::error_chain(&error), "store failed; recipient deferred");
                        return RcptVerdict::Tempfail;
                    }
                    OnStoreError::Accept => {
                        warn!(rcpt = %address, error = %crate::error_chain(&error), "store failed; recipient accepted (fail-open)");
                        recipient.checked_for = Some(list.clone());
                    }
                },
            }
        }
        self.message.recipients.push(recipient);
        RcptVerdict::Continue
    }

    /// A header: the list header names the list (the first one counts) and is counted so
    /// that every copy can be removed.
    pub fn header(&mut self, milter: &Milter, name: &str, value: &str) {
        if !self.message.intake_rcpts.is_empty() {
            let raw = &mut self.message.raw_headers;
            raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if name.eq_ignore_ascii_case(LIST_UNSUBSCRIBE) {
            self.message.unsubscribe_headers += 1;
        } else if name.eq_ignore_ascii_case(LIST_UNSUBSCRIBE_POST) {
            self.message.post_headers += 1;
        }
        let classifier = &milter.config.classifier;
        if !classifier.is_list_header(name) {
            return;
        }
        self.message.list_headers += 1;
        if self.message.header_list.is_none() {
            let list = classifier.by_header(value).unwrap_or_else(|all| {
                warn!(
                    value,
                    "list header is not a valid list id; treated as all marketing"
                );
                all
            });
            self.message.header_list = Some(list);
        }
    }

    /// A body chunk: kept only for an unsubscribe mail, and only up to one byte past the
    /// intake's size limit (enough to know it is too large). `false`: the rest of the body
    /// is not needed.
    pub fn body(&mut self, milter: &Milter, chunk: &[u8]) -> bool {
        let (Some(intake), false) = (&milter.intake, self.message.intake_rcpts.is_empty()) else {
            return false;
        };
        let message = &mut self.message;
        let used = message.raw_headers.len() + 2 + message.body.len();
        let room = (intake.config.max_bytes + 1).saturating_sub(used);
        message
            .body
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        chunk.len() < room
    }

    /// End of message: which recipients to remove, which headers to change, and the
    /// message's fate.
    pub async fn eom(&mut self, milter: &Milter) -> EomPlan {
        let mut message = std::mem::take(&mut self.message);
        let mut plan = EomPlan {
            delete_headers: Vec::new(),
            remove: Vec::new(),
            add_headers: Vec::new(),
            verdict: EomVerdict::Continue,
        };
        let unsubscribe_mail = !message.intake_rcpts.is_empty();
        let list = message.header_list.clone().or(message.sender_list.clone());
        let hot = metrics::hot();
        match (unsubscribe_mail, &list) {
            (true, _) => hot.unsubscribe.inc(),
            (false, Some(_)) => hot.marketing.inc(),
            (false, None) => hot.transactional.inc(),
        };
        if unsubscribe_mail
            && let Some(done) = take_unsubscribe_mail(milter, &mut message, &mut plan).await
        {
            return done;
        }
        if message.list_headers > 0 {
            let name = milter.config.classifier.list_header.clone();
            plan.delete_headers.push((name, message.list_headers));
        }
        let Some(list) = list else {
            return plan;
        };
        let mut remaining = Vec::with_capacity(message.recipients.len());
        for recipient in &message.recipients {
            match self.keeps(milter, recipient, &list).await {
                Ok(true) => remaining.push(recipient),
                Ok(false) => plan.remove.push(recipient.raw.clone()),
                Err(()) => return tempfail(),
            }
        }
        if remaining.is_empty() && !plan.remove.is_empty() {
            plan.remove.clear();
            plan.verdict = match milter.config.milter.all_opted_out {
                AllOptedOut::Reject => EomVerdict::Reject {
                    xcode: "5.7.1",
                    text: "every recipient has opted out of this mail".into(),
                },
                AllOptedOut::Discard => EomVerdict::Discard,
            };
            info!(%list, verdict = ?plan.verdict, "every recipient opted out");
            return plan;
        }
        match &milter.unsubscribe {
            Some(unsubscribe) => {
                self.unsubscribe_headers(milter, unsubscribe, &message, &remaining, &list, plan)
                    .await
            }
            None => plan,
        }
    }

    /// Whether `recipient` stays on a message of `list`; `Err` when the store failed and
    /// the message must be deferred.
    async fn keeps(
        &self,
        milter: &Milter,
        recipient: &Recipient,
        list: &Scope,
    ) -> Result<bool, ()> {
        let Some(address) = &recipient.address else {
            info!(rcpt = recipient.raw, %list, "recipient removed: its address cannot be checked");
            count_recipient("removed", list, "unparseable");
            return Ok(false);
        };
        if recipient.checked_for.as_ref() == Some(list) {
            return Ok(true);
        }
        match decide(milter, address, list).await {
            Ok(Decision::Allow) => Ok(true),
            Ok(Decision::Block(reason)) => {
                info!(rcpt = %address, %list, reason = %describe(&reason), "recipient removed");
                count_recipient("removed", list, reason_label(&reason));
                Ok(false)
            }
            Err(error) => match milter.config.milter.on_store_error {
                OnStoreError::Tempfail => {
                    warn!(rcpt = %address, error = %crate::error_chain(&error), "store failed; message deferred");
                    Err(())
                }
                OnStoreError::Accept => {
                    warn!(rcpt = %address, error = %crate::error_chain(&error), "store failed; recipient kept (fail-open)");
                    Ok(true)
                }
            },
        }
    }

    /// Adds the unsubscribe headers to a marketing message that goes out.
    #[allow(clippy::too_many_arguments)]
    async fn unsubscribe_headers(
        &self,
        milter: &Milter,
        unsubscribe: &Unsubscribe,
        message: &Message,
        remaining: &[&Recipient],
        list: &Scope,
        mut plan: EomPlan,
    ) -> EomPlan {
        let config = &unsubscribe.config;
        match config.existing_header {
            ExistingHeader::Keep if message.unsubscribe_headers > 0 => return plan,
            ExistingHeader::Keep => {}
            ExistingHeader::Replace => {
                for (name, count) in [
                    (LIST_UNSUBSCRIBE, message.unsubscribe_headers),
                    (LIST_UNSUBSCRIBE_POST, message.post_headers),
                ] {
                    if count > 0 {
                        plan.delete_headers.push((name.to_owned(), count));
                    }
                }
            }
        }
        let single = match remaining {
            [one] => one.address.as_ref(),
            _ => None,
        };
        let Some(address) = single else {
            match config.multiple_recipients {
                MultipleRecipients::ListLevel => {
                    plan.add_headers
                        .push((LIST_UNSUBSCRIBE, config.links.list_level(list)));
                    count_header("list-level");
                }
                MultipleRecipients::Reject => {
                    plan.remove.clear();
                    plan.verdict = EomVerdict::Reject {
                        xcode: "5.5.3",
                        text: "marketing mail must have one recipient per message, for its unsubscribe link".into(),
                    };
                    info!(%list, recipients = remaining.len(), "several recipients refused");
                }
                MultipleRecipients::Skip => {}
            }
            return plan;
        };
        let lookup = milter.store.subject_id(address, list);
        let subject = match tokio::time::timeout(milter.config.milter.store_timeout, lookup).await {
            Ok(Ok(id)) => id,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => LookupError::Store(e),
                    _ => LookupError::Timeout,
                };
                return match milter.config.milter.on_store_error {
                    OnStoreError::Tempfail => {
                        warn!(rcpt = %address, error = %crate::error_chain(&error), "store failed; message deferred");
                        tempfail()
                    }
                    OnStoreError::Accept => {
                        warn!(rcpt = %address, error = %crate::error_chain(&error), "store failed; sent without unsubscribe headers (fail-open)");
                        plan
                    }
                };
            }
        };
        match unsubscribe.codec.mint(subject, SystemTime::now()) {
            Ok(token) => {
                plan.add_headers
                    .push((LIST_UNSUBSCRIBE, config.links.per_recipient(&token)));
                plan.add_headers
                    .push((LIST_UNSUBSCRIBE_POST, ONE_CLICK.to_owned()));
                count_header("per-recipient");
            }
            Err(e) => {
                error!(rcpt = %address, error = %crate::error_chain(&e), "cannot mint a token; list-level header instead");
                plan.add_headers
                    .push((LIST_UNSUBSCRIBE, config.links.list_level(list)));
                count_header("list-level");
            }
        }
        plan
    }

    /// The message was aborted: forget it.
    pub fn abort(&mut self) {
        self.message = Message::default();
    }
}

/// Hands an unsubscribe mail to the intake. `Some(plan)` when that decides the message's
/// fate; `None` when the other recipients still go through the usual checks.
async fn take_unsubscribe_mail(
    milter: &Milter,
    message: &mut Message,
    plan: &mut EomPlan,
) -> Option<EomPlan> {
    let intake = milter.intake.as_ref()?;
    let mut raw = std::mem::take(&mut message.raw_headers);
    raw.extend_from_slice(b"\r\n");
    raw.append(&mut message.body);
    let envelope = Envelope {
        sender: Some(message.sender.clone()),
        recipients: message.intake_rcpts.clone(),
    };
    let only_intake = message.recipients.is_empty();
    match intake.process(&envelope, &raw).await {
        Err(error) if error.is_temporary() => {
            warn!(error = %crate::error_chain(&error), "unsubscribe mail deferred");
            return Some(tempfail());
        }
        Err(IntakeError::Unusable) if only_intake => {
            return Some(EomPlan {
                verdict: EomVerdict::Reject {
                    xcode: "5.6.0",
                    text: "this unsubscribe message cannot be read".into(),
                },
                ..tempfail()
            });
        }
        Err(_) | Ok(_) => {}
    }
    match (intake.config.after, only_intake) {
        (After::Deliver, _) => None,
        (After::Discard, true) => Some(EomPlan {
            verdict: EomVerdict::Discard,
            ..tempfail()
        }),
        (After::Discard, false) => {
            plan.remove.append(&mut message.intake_rcpts);
            None
        }
    }
}

/// Defers the whole message: nothing is changed.
fn tempfail() -> EomPlan {
    EomPlan {
        delete_headers: Vec::new(),
        remove: Vec::new(),
        add_headers: Vec::new(),
        verdict: EomVerdict::Tempfail,
    }
}

/// The text of a refusal for an address that cannot be parsed.
const UNCHECKABLE: &str = "recipient address cannot be checked for opt-out";

/// The decision for `address` and every alias of it: blocked if any of them is.
async fn decide(milter: &Milter, address: &Address, list: &Scope) -> Result<Decision, LookupError> {
    let config = &milter.config;
    let timeout = config.milter.store_timeout;
    let lookup = |candidate: Address, channel: Channel| async move {
        tokio::time::timeout(
            timeout,
            milter.store.scoped_values(&candidate, channel, list),
        )
        .await
        .map_err(|_| LookupError::Timeout)?
        .map_err(|error| {
            metrics::get().store_errors.inc();
            LookupError::Store(error)
        })
    };
    config
        .consent
        .decide_for(
            &config.addresses,
            milter.erasure.as_deref(),
            address,
            Channel::Email,
            config.phones.gateway_number(address),
            list,
            lookup,
        )
        .await
}

fn refusal_text(address: &Address, list: &Scope) -> String {
    match list {
        Scope::All => format!("<{address}>: recipient has opted out of marketing mail"),
        Scope::List(id) => format!("<{address}>: recipient has opted out of list {id}"),
    }
}

fn reason_label(reason: &BlockReason) -> &'static str {
    match reason {
        BlockReason::OptedOut { .. } => "opted-out",
        BlockReason::NoConsent => "no-consent",
    }
}

fn count_recipient(action: &'static str, list: &Scope, reason: &'static str) {
    let labels = metrics::RecipientLabels {
        action,
        list: list.as_str().to_owned(),
        reason,
    };
    metrics::get().recipients.get_or_create(&labels).inc();
}

fn count_header(kind: &'static str) {
    metrics::get()
        .headers
        .get_or_create(&metrics::Kind { kind })
        .inc();
}

fn describe(reason: &BlockReason) -> String {
    match reason {
        BlockReason::OptedOut { scope, value } => format!("{value} at {scope}"),
        BlockReason::NoConsent => "no consent (opt-in only)".into(),
    }
}
