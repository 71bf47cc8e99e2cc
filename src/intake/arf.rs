//! Feedback-loop reports in the Abuse Reporting Format (RFC 5965): what a mailbox
//! provider sends when one of its users presses "report spam" (Yahoo's CFL, Microsoft's
//! JMRP, and the others that follow the RFC).
//!
//! A report is `multipart/report; report-type=feedback-report` with three parts: a human
//! note, a `message/feedback-report` part of `Name: value` fields (`Feedback-Type`,
//! `Original-Rcpt-To`, `Arrival-Date`, …), and the reported message whole
//! (`message/rfc822`) or its header only (`text/rfc822-headers`). Providers often redact
//! the recipient's address, in the fields and in the reported message; the
//! `List-Unsubscribe` header this product put on the message still carries a token that
//! names the recipient and the list without it.
//!
//! This module only reads: which report it is, and what it says. What to record is
//! [`super::complaint`]'s business.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

/// What a feedback report says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `Feedback-Type`, lower-cased: `abuse`, `fraud`, `not-spam`, `virus`, `other`, …
    pub feedback_type: String,
    /// `Original-Rcpt-To` of the report fields (there may be several; the first).
    pub original_rcpt_to: Option<String>,
    /// `Arrival-Date` (or the older `Received-Date`), as written.
    pub arrival_date: Option<String>,
    /// `User-Agent` of the report: which feedback loop made it.
    pub user_agent: Option<String>,
    /// The reported message's `Message-ID`, without angle brackets.
    pub original_message_id: Option<String>,
    /// Every `List-Unsubscribe` value of the reported message.
    pub list_unsubscribe: Vec<String>,
    /// The addresses in the reported message's `To`.
    pub original_to: Vec<String>,
}

/// Why a mail is not a feedback report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAReport {
    #[error("it has no message/feedback-report part")]
    NoFeedbackPart,
    #[error("its feedback report has no Feedback-Type")]
    NoFeedbackType,
}

/// Reads the feedback report in `message`.
///
/// Accepted whether or not the outer type says `report-type=feedback-report`: some loops
/// send the same three parts as `multipart/mixed`. What decides is the
/// `message/feedback-report` part.
pub fn parse(message: &Message) -> Result<Report, NotAReport> {
    let fields = message
        .parts
        .iter()
        .find(|part| {
            part.content_type().is_some_and(|t| {
                t.ctype().eq_ignore_ascii_case("message")
                    && t.subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("feedback-report"))
            })
        })
        .ok_or(NotAReport::NoFeedbackPart)?;
    let fields = Fields::parse(fields.contents());
    let feedback_type = fields
        .first("Feedback-Type")
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .ok_or(NotAReport::NoFeedbackType)?;
    let mut report = Report {
        feedback_type,
        original_rcpt_to: fields.first("Original-Rcpt-To").map(strip_brackets),
        arrival_date: fields
            .first("Arrival-Date")
            .or_else(|| fields.first("Received-Date"))
            .map(|d| d.trim().to_owned()),
        user_agent: fields.first("User-Agent").map(|u| u.trim().to_owned()),
        ..Report::default()
    };
    if let Some(original) = reported_message(message) {
        report.original_message_id = original.message_id().map(str::to_owned);
        report.list_unsubscribe = original
            .headers_raw()
            .filter(|(name, _)| name.eq_ignore_ascii_case("List-Unsubscribe"))
            .map(|(_, value)| unfold(value))
            .collect();
        report.original_to = original
            .to()
            .iter()
            .flat_map(|to| to.iter())
            .filter_map(|a| a.address())
            .map(str::to_owned)
            .collect();
    }
    Ok(report)
}

/// The reported message, whole or its header only.
fn reported_message<'a>(message: &'a Message<'a>) -> Option<Message<'a>> {
    message.parts.iter().find_map(|part| match &part.body {
        PartType::Message(inner) => Some(inner.clone()),
        _ => part
            .content_type()
            .filter(|t| {
                t.ctype().eq_ignore_ascii_case("text")
                    && t.subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
            })
            .and_then(|_| header_block(part.contents())),
    })
}

/// A header block (`text/rfc822-headers`) read as a message without a body.
fn header_block(bytes: &[u8]) -> Option<Message<'static>> {
    let mut block = bytes.to_vec();
    block.extend_from_slice(b"\r\n\r\n");
    MessageParser::default()
        .parse(&block)
        .map(Message::into_owned)
        .filter(|m| !m.headers().is_empty())
}

/// The `Name: value` fields of a `message/feedback-report` part (RFC 5965 section 3.1:
/// header syntax, folded lines allowed).
struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = fields.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        Self(fields)
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn strip_brackets(address: &str) -> String {
    address.trim().trim_matches(['<', '>']).trim().to_owned()
}

/// A header value on one line.
fn unfold(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a provider replaced `address`, or its local part, to hide whom the message
/// went to: `redacted@…`, `xxxxxxxx@…`, `****@…`, or nothing usable at all.
pub fn redacted(address: &str) -> bool {
    let Some((local, domain)) = address.trim().rsplit_once('@') else {
        return true;
    };
    let local = local.to_ascii_lowercase();
    local.is_empty()
        || domain.trim().is_empty()
        || local.contains("redacted")
        || local
            .bytes()
            .all(|b| matches!(b, b'x' | b'*' | b'#' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_addresses_are_recognised() {
        for address in [
            "redacted@example.org",
            "xxxxxxxx@hotmail.com",
            "XXXX@yahoo.com",
            "****@example.org",
            "@example.org",
            "nobody",
        ] {
            assert!(redacted(address), "{address}");
        }
        for address in ["jane@example.org", "x1@example.org", "max@example.org"] {
            assert!(!redacted(address), "{address}");
        }
    }

    #[test]
    fn folded_fields_are_joined() {
        let fields = Fields::parse(b"Feedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\n  (continued)\r\nVersion: 1\r\n");
        assert_eq!(fields.first("feedback-type"), Some("abuse"));
        assert_eq!(
            fields.first("User-Agent"),
            Some("SomeGenerator/1.0 (continued)")
        );
        assert_eq!(fields.first("Original-Rcpt-To"), None);
    }
}
