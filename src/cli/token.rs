//! `optout-milter token ...`: mint a token by hand, see what one says, make a key.

use super::{CliError, TokenCommand};
use crate::{config::Config, consent::Scope, store, token::keys, unsubscribe::Unsubscribe};
use std::{path::Path, time::SystemTime};

/// `token keygen FILE`; it needs no config, so it runs before any is read.
pub fn keygen(file: &Path) -> Result<(), CliError> {
    keys::generate(file)?;
    println!("created {} (mode 0600)", file.display());
    Ok(())
}

pub async fn run(config: &Config, command: TokenCommand) -> Result<(), CliError> {
    let unsubscribe = config.unsubscribe.clone().ok_or_else(|| {
        CliError::Usage(format!(
            "{}: there is no [unsubscribe] section, so there are no tokens",
            config.path.display()
        ))
    })?;
    let unsubscribe = Unsubscribe::load(unsubscribe)?;
    let store = store::open(&config.store_url).await?;
    match command {
        TokenCommand::Mint { address, list } => {
            let address = config.addresses.normalize(&address)?;
            let subject = store.subject_id(&address, &list).await?;
            let token = unsubscribe.codec.mint(subject, SystemTime::now())?;
            let links = &unsubscribe.config.links;
            println!("token: {token}");
            println!("https: {}", links.https_uri(&token));
            println!("mailto: {}", links.mailto_address(&token));
            println!(
                "List-Unsubscribe: {}",
                links.per_recipient(&token).replace('\n', "\n  ")
            );
        }
        TokenCommand::Inspect { token } => {
            // The token alone, or inside the link or the unsubscribe address it came in.
            let token = crate::intake::parse::token_candidates(&token)
                .next()
                .unwrap_or_else(|| token.trim().to_owned());
            let verified = unsubscribe.codec.verify(&token, SystemTime::now())?;
            let claims = verified.claims;
            println!("key id: {}", claims.key_id);
            println!(
                "issued: {}",
                humantime::format_rfc3339_seconds(claims.issued())
            );
            println!(
                "expired: {}",
                if verified.expired {
                    "yes (still honoured for opt-outs)"
                } else {
                    "no"
                }
            );
            println!("subject id: {}", claims.subject);
            match store.subject(claims.subject).await? {
                Some((address, scope)) => {
                    println!("address: {address}");
                    println!("scope: {}", describe(&scope));
                }
                None => println!("address: unknown to this store"),
            }
        }
        TokenCommand::Keygen { file } => keygen(&file)?,
    }
    Ok(())
}

fn describe(scope: &Scope) -> String {
    match scope {
        Scope::All => "* (all marketing)".into(),
        Scope::List(id) => id.clone(),
    }
}
