//! `optout-milter ingest`: one unsubscribe mail on standard input, for Postfix's `pipe`
//! transport. The exit status follows sysexits, which Postfix understands: 0 done (the
//! opt-out is on disk, or the mail was not an unsubscribe request), 65 the message is
//! unusable (Postfix bounces it), 75 a temporary failure (Postfix keeps it and retries),
//! 78 a configuration error (Postfix bounces it with "local configuration error", so the
//! person learns the request failed instead of it waiting for days behind a config that
//! will not fix itself).

use super::CliError;
use crate::{
    config::Config,
    intake::{Envelope, Intake, Outcome},
    store,
    unsubscribe::Unsubscribe,
};
use std::{io::Read, sync::Arc};

pub async fn run(
    config: &Config,
    sender: Option<String>,
    recipients: Vec<String>,
) -> Result<(), CliError> {
    let intake_config = config.intake.clone().ok_or_else(|| {
        CliError::Usage(format!(
            "{}: there is no [intake] section",
            config.path.display()
        ))
    })?;
    let unsubscribe = config.unsubscribe.clone().ok_or_else(|| {
        CliError::Usage(format!(
            "{}: there is no [unsubscribe] section",
            config.path.display()
        ))
    })?;
    let unsubscribe = Arc::new(Unsubscribe::load(unsubscribe)?);
    let store = store::open(&config.store_url).await?;
    let max = intake_config.max_bytes;
    let raw = read_capped(max)?;
    let intake = Intake::new(intake_config, store, unsubscribe, config.addresses.clone());
    let envelope = Envelope { sender, recipients };
    match intake.process(&envelope, &raw).await? {
        Outcome::Unsubscribed(done) => {
            for u in done {
                let (address, scope, found_in) = (u.address, u.scope, u.found_in);
                println!(
                    "unsubscribed: {address} {scope} (found in {found_in}, {:?})",
                    u.recorded
                );
            }
        }
        Outcome::Complained(u) => println!(
            "complaint: {} {} (found in {}, {:?})",
            u.address, u.scope, u.found_in, u.recorded
        ),
        Outcome::ConfirmationRequested(address) => {
            println!("a link to confirm was sent to {address}")
        }
        Outcome::Ignored(reason) => println!("ignored: {reason}"),
    }
    Ok(())
}

/// Standard input, keeping at most `max + 1` bytes (enough to know it is too large) and
/// draining the rest so the MTA's write does not fail.
fn read_capped(max: usize) -> Result<Vec<u8>, CliError> {
    let mut stdin = std::io::stdin().lock();
    let mut raw = Vec::new();
    stdin.by_ref().take(max as u64 + 1).read_to_end(&mut raw)?;
    std::io::copy(&mut stdin, &mut std::io::sink())?;
    Ok(raw)
}
