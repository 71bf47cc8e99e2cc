//! `optout-milter check-config`: everything `serve` would check before it binds a socket,
//! so that a mistake shows up here and not at the next restart. Beyond the file's own
//! validation: the token key files (present, mode, length; a missing first key is fine
//! when `generate_missing_key` is on, and is not created here), the TLS certificate and
//! key, the pages' templates and logo, the admin API's token files, the webhooks' secrets, the SMS providers'
//! credentials, the erasure key, and the store (a supported URL; for SQLite, naming
//! a file that exists).

use super::CliError;
use crate::{config::Config, store, token::Keyring, web};

/// Runs every check; prints each problem with the file and key, and the warnings.
pub fn run(config: &Config) -> Result<(), CliError> {
    let file = config.path.display();
    let mut problems: Vec<String> = Vec::new();
    if let Some(u) = &config.unsubscribe {
        let will_create =
            u.generate_missing_key && u.keys.first().is_some_and(|first| !first.file.exists());
        let present = &u.keys[usize::from(will_create)..];
        if will_create && let Some(first) = u.keys.first() {
            println!(
                "{file}: unsubscribe.keys: {} does not exist yet; serve will create it",
                first.file.display()
            );
        }
        if !present.is_empty()
            && let Err(e) = Keyring::load(present)
        {
            problems.push(format!("unsubscribe.keys: {}", crate::error_chain(&e)));
        }
    }
    if let Some(w) = &config.web {
        if let Err(e) = web::tls(w.tls.as_ref()) {
            problems.push(format!("web.tls_cert / web.tls_key: {e}"));
        }
        if let Err(e) = web::pages::Pages::load(w) {
            problems.push(format!(
                "web.templates / web.brand: {}",
                crate::error_chain(&e)
            ));
        }
    }
    if let Some(a) = &config.api {
        if let Err(e) = crate::api::Tokens::load(&a.tokens) {
            problems.push(format!("api.tokens: {e}"));
        }
        if let Err(e) = web::tls(a.tls.as_ref()) {
            problems.push(format!("api.tls_cert / api.tls_key: {e}"));
        }
    }
    if let Some(path) = &config.erasure_key
        && let Err(e) = crate::token::keys::read_key(path)
    {
        problems.push(format!("consent.erasure_key: {e}"));
    }
    if let Err(e) = web::sms::SmsFront::load(config) {
        problems.push(format!("sms: {e}"));
    }
    for w in &config.webhooks {
        if let Err(e) = crate::webhooks::Secret::load(&w.secret_file) {
            problems.push(format!("webhooks ({}): {e}", w.name));
        }
    }
    if let Err(e) = store::check(&config.store_url) {
        problems.push(format!("store.url: {}", crate::error_chain(&e)));
    }
    for warning in config.warnings() {
        eprintln!("warning: {file}: {warning}");
    }
    for problem in &problems {
        eprintln!("{file}: {problem}");
    }
    match problems.len() {
        0 => {
            println!("{file}: OK");
            Ok(())
        }
        n => Err(CliError::Check(n)),
    }
}
