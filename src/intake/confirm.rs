//! The optional confirmation mail, sent with lettre through the configured SMTP relay after
//! an opt-out by mail was recorded. It goes only to the address that was unsubscribed,
//! which a valid token or an authenticated sender has proven, never to an unverified
//! `From`. It is marked `Auto-Submitted: auto-generated` so that it draws no auto-replies.

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
        let message = Message::builder()
            .from(self.config.from.clone())
            .to(to.as_str().parse()?)
            .subject(&self.config.subject)
            .header(ContentType::TEXT_PLAIN)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ))
            .body(self.config.text.clone())?;
        self.transport.send(message).await?;
        Ok(())
    }
}
