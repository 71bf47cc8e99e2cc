//! SMS keywords: a person texts STOP, START or HELP to one of the sender's numbers; the
//! SMS provider posts the message to the web front; the keyword is recorded on channel
//! `sms` for the person's number, and the answer is the text sent back.
//!
//! What each keyword records, for the number the person wrote from:
//! - STOP (and its synonyms): `n` for the list of the number or short code written to
//!   (`[sms.numbers]`, or the number itself as the list id), as carriers scope STOP to the
//!   sender it was sent to;
//! - STOPALL: `n` for all marketing (`*`);
//! - START: `y` for that list, and, when the person's opt-out from all marketing came from
//!   an SMS keyword, `y` for all marketing too (START undoes STOPALL; an opt-out recorded
//!   any other way is left for that way to undo);
//! - HELP: nothing.
//!
//! Providers send a message again until they get a 200; a message is applied once by its
//! id ([`crate::store::Records::record_once`]), and the 200 comes after the commit.
//! Ids are never forgotten: a Twilio signature carries no time, so a copied request stays
//! valid, and only its id keeps an old START from undoing a newer STOP.
//! The provider formats and their signatures are in [`twilio`] and [`vonage`]; the HTTP
//! side is in [`crate::web`].

pub mod keywords;
pub mod twilio;
pub mod vonage;

use crate::{
    consent::{
        Address, Change, Channel, ConsentValue, Effect, PhoneError, PhonePolicy, Scope, Source,
    },
    store::{Records, StoreError},
};
use keywords::{Keywords, Kind, Match};
use std::{collections::BTreeMap, time::SystemTime};

/// The answers of one language, by keyword kind.
pub type Replies = BTreeMap<Kind, String>;

/// The SMS settings that decide what a message records and answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsPolicy {
    /// The language of answers to keywords several languages share (STOP).
    pub language: String,
    /// The sender's numbers and short codes ([`our_number`]) and the list a STOP to each
    /// leaves; others are their own list.
    pub numbers: BTreeMap<String, Scope>,
    pub keywords: Keywords,
    /// Every language that has keywords has an answer for each kind. `{sender}` in an
    /// answer is replaced by the sender's name.
    pub replies: BTreeMap<String, Replies>,
}

/// The default answers of `language` (`en` or `fr`). The HELP answer names the sender
/// and how to leave, as the CTIA's handbook asks.
pub fn default_replies(language: &str) -> Option<Replies> {
    let texts: [(Kind, &str); 4] = match language {
        "en" => [
            (
                Kind::OptOut,
                "{sender}: you are unsubscribed and will get no more messages from this number. Reply START to subscribe again.",
            ),
            (
                Kind::OptOutAll,
                "{sender}: you are unsubscribed from all our marketing messages. Reply START to subscribe again.",
            ),
            (
                Kind::OptIn,
                "{sender}: you are subscribed again. Reply STOP to unsubscribe, HELP for help.",
            ),
            (
                Kind::Help,
                "{sender}: reply STOP to stop these messages, STOPALL to stop all of ours, START to get them again. Msg & data rates may apply.",
            ),
        ],
        "fr" => [
            (
                Kind::OptOut,
                "{sender} : vous êtes désinscrit(e) et ne recevrez plus de messages de ce numéro. Répondez START pour vous réinscrire.",
            ),
            (
                Kind::OptOutAll,
                "{sender} : vous êtes désinscrit(e) de tous nos messages commerciaux. Répondez START pour vous réinscrire.",
            ),
            (
                Kind::OptIn,
                "{sender} : vous êtes de nouveau inscrit(e). Répondez STOP pour vous désinscrire, AIDE pour de l'aide.",
            ),
            (
                Kind::Help,
                "{sender} : répondez STOP pour ne plus recevoir ces messages, STOP ALL pour ne plus recevoir aucun des nôtres, START pour les recevoir à nouveau.",
            ),
        ],
        _ => return None,
    };
    Some(texts.into_iter().map(|(k, t)| (k, t.to_owned())).collect())
}

/// The key of one of the sender's numbers: a short code (up to 8 digits) as its digits,
/// any other number in E.164 (written with or without `+`, or national in the default
/// region). `None` for what is neither.
pub fn our_number(phones: &PhonePolicy, text: &str) -> Option<String> {
    let text = text.trim();
    if (3..=8).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(text.to_owned());
    }
    phones
        .normalize_sender(text)
        .ok()
        .map(|a| a.as_str().to_owned())
}

/// One inbound message, whatever the provider.
#[derive(Clone, Debug)]
pub struct Inbound<'a> {
    /// `twilio`, `vonage` or `generic`: with `id`, the message's idempotency key.
    pub provider: &'static str,
    pub id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub text: &'a str,
}

/// What a message did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not a keyword: nothing recorded, nothing answered.
    NotKeyword,
    Keyword {
        found: Match,
        /// The text to send back.
        reply: String,
        /// The message was applied before (a provider's retry): nothing written now.
        repeated: bool,
        /// The person's number, as recorded.
        number: Address,
    },
}

/// A message that cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    #[error("the sender {0:?} is not a phone number: {1}")]
    Sender(String, #[source] PhoneError),
    #[error("the number written to, {0:?}, is not a phone number or short code")]
    Recipient(String),
    #[error("the message id is empty")]
    NoId,
    #[error("the store failed")]
    Store(#[from] StoreError),
}

impl SmsPolicy {
    /// Takes `message`: finds its keyword, records what it asks (once per message id)
    /// and returns the answer, with `{sender}` replaced by `sender_name`.
    pub async fn take(
        &self,
        phones: &PhonePolicy,
        store: &dyn Records,
        sender_name: &str,
        message: &Inbound<'_>,
    ) -> Result<Outcome, SmsError> {
        let Some(found) = self.keywords.find(message.text, &self.language) else {
            return Ok(Outcome::NotKeyword);
        };
        if message.id.trim().is_empty() {
            return Err(SmsError::NoId);
        }
        let number = phones
            .normalize_sender(message.from)
            .map_err(|e| SmsError::Sender(message.from.to_owned(), e))?;
        let ours = our_number(phones, message.to)
            .ok_or_else(|| SmsError::Recipient(message.to.to_owned()))?;
        let list = self.list_of(&ours);
        let evidence = format!(
            "{} message {} from {} to {ours}: {}",
            message.provider, message.id, number, found.word
        );
        let at = SystemTime::now();
        let change = |scope: Scope, value: ConsentValue| Change {
            address: number.clone(),
            channel: Channel::Sms,
            scope,
            value,
            source: Source::SmsKeyword,
            at,
            evidence: evidence.clone(),
        };
        let changes = match found.kind {
            Kind::OptOut => vec![change(list, ConsentValue::No)],
            Kind::OptOutAll => vec![change(Scope::All, ConsentValue::No)],
            Kind::OptIn => {
                let mut changes = vec![change(list, ConsentValue::Yes)];
                let all_by_keyword = store.records(&number).await?.iter().any(|r| {
                    r.channel == Channel::Sms
                        && r.scope == Scope::All
                        && r.value.effect() == Effect::Blocks
                        && r.source == Source::SmsKeyword
                });
                if all_by_keyword {
                    changes.push(change(Scope::All, ConsentValue::Yes));
                }
                changes
            }
            Kind::Help => Vec::new(),
        };
        let repeated = match changes.is_empty() {
            true => false,
            false => {
                let id = format!("{}:{}", message.provider, message.id.trim());
                store.record_once(&id, &changes).await?.is_none()
            }
        };
        let reply = self.reply(&found, sender_name);
        Ok(Outcome::Keyword {
            found,
            reply,
            repeated,
            number,
        })
    }

    /// The list a STOP to `ours` (an [`our_number`] key) leaves.
    pub fn list_of(&self, ours: &str) -> Scope {
        self.numbers
            .get(ours)
            .cloned()
            .unwrap_or_else(|| Scope::List(ours.trim_start_matches('+').to_owned()))
    }

    /// The answer to `found`.
    pub fn reply(&self, found: &Match, sender_name: &str) -> String {
        self.replies
            .get(&found.language)
            .and_then(|r| r.get(&found.kind))
            .map(|text| text.replace("{sender}", sender_name))
            .unwrap_or_default()
    }
}
