//! Mails sent through the configured SMTP relay (`[intake.confirmation]`), with lettre:
//! - the confirmation after an opt-out by mail was recorded. It goes only to the address
//!   that was unsubscribed, which a valid token or an authenticated sender has proven;
//! - the *request*: an unsubscribe mail without a valid token from a sender that cannot be
//!   authenticated gets a link (a token for that address) that unsubscribes from the
//!   landing page. Only the mailbox's owner can follow it, so a forged `From` unsubscribes
//!   nobody, and a real request is never dropped in silence.
//!
//! Both are marked `Auto-Submitted: auto-generated` so that they draw no auto-replies.

use crate::consent::Address;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::header::{ContentType, HeaderName, HeaderValue},
};

/// `[intake.confirmation]`, validated.
#[derive(Clone, Debug)]
pub struct ConfirmationConfig {
    pub relay_host: String,
    pub relay_port: u16,
    pub from: lettre::message::Mailbox,
    pub subject: String,
    pub text: String,
    pub request_subject: String,
    pub request_text: String,
}

/// Sends confirmations.
pub struct Confirmer {
    config: ConfirmationConfig,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

/// A confirmation that could not be sent; the opt-out stands regardless.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("cannot build the confirmation")]
    Build(#[from] lettre::error::Error),
    #[error("the relay refused or failed the confirmation")]
    Send(#[from] lettre::transport::smtp::Error),
    #[error("the unsubscribed address cannot be written as a mailbox")]
    Address(#[from] lettre::address::AddressError),
}

impl Confirmer {
    pub fn new(config: ConfirmationConfig) -> Self {
        // Plain SMTP to a relay on the local network, as for the MTA's own submissions.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.relay_host)
            .port(config.relay_port)
            .build();
        Self { config, transport }
    }

    /// Sends the confirmation to `to`.
    pub async fn send(&self, to: &Address) -> Result<(), ConfirmError> {
        self.deliver(to, &self.config.subject, self.config.text.clone())
            .await
    }

    /// Asks `to` to confirm an unsubscribe request by opening `link`.
    pub async fn request(&self, to: &Address, link: &str) -> Result<(), ConfirmError> {
        let text = format!("{}\n{link}\n", self.config.request_text.trim_end());
        self.deliver(to, &self.config.request_subject, text).await
    }

    async fn deliver(&self, to: &Address, subject: &str, text: String) -> Result<(), ConfirmError> {
        let message = Message::builder()
            .from(self.config.from.clone())
            .to(to.as_str().parse()?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .body(text)?;
        self.transport.send(message).await?;
        Ok(())
    }
}
