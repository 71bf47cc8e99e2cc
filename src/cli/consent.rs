//! `optout-milter consent ...`: what an operator does by hand. Every write is durable
//! before the command prints success.

use super::{CliError, ConsentCommand};
use crate::{
    config::Config,
    consent::{Change, Channel, ConsentRecord, ConsentValue, Scope, Source},
    import,
    store::{self, ConsentStore, RecordKey, Recorded},
};
use std::{
    fs::File,
    io::{self, Write},
    time::SystemTime,
};

const PAGE: u32 = 10_000;

pub async fn run(config: &Config, command: ConsentCommand) -> Result<(), CliError> {
    let store = store::open(&config.store_url).await?;
    let store = store.as_ref();
    let normalize = |a: &str| crate::consent::any_key(a, &config.addresses, &config.phones);
    let mut out = io::stdout().lock();
    match command {
        ConsentCommand::Set {
            address,
            value,
            scope,
            channel,
            evidence,
        } => {
            let channel = channel.parse::<Channel>().map_err(CliError::Usage)?;
            let change = Change {
                address: crate::consent::key(channel, &address, &config.addresses, &config.phones)?,
                channel,
                scope,
                value,
                source: Source::Cli,
                at: SystemTime::now(),
                evidence,
            };
            let outcome = store.record(std::slice::from_ref(&change)).await?;
            let word = match outcome.first() {
                Some(Recorded::Changed) => "recorded",
                _ => "unchanged",
            };
            writeln!(
                out,
                "{word}: {} {} {} {}",
                change.address, change.channel, change.scope, change.value
            )?;
        }
        ConsentCommand::Get { address } => {
            let address = normalize(&address)?;
            if let Some(erasure) = crate::daemon::load_erasure(config)?
                && crate::erase::is_erased(store, &erasure, &address).await?
            {
                writeln!(
                    out,
                    "{address}: erased; mail to it is refused (lift with `consent erase --lift`)"
                )?;
            }
            let records = store.records(&address).await?;
            if records.is_empty() {
                writeln!(
                    out,
                    "{address}: no records; the default ({}) applies",
                    default_word(config)
                )?;
            }
            for r in records {
                writeln!(out, "{}", record_line(&r))?;
            }
        }
        ConsentCommand::List => {
            for_each_record(store, |r| {
                writeln!(out, "{}", record_line(r)).map_err(CliError::from)
            })
            .await?;
        }
        ConsentCommand::History { address } => {
            let address = normalize(&address)?;
            let history = store.history(&address).await?;
            if history.is_empty() {
                writeln!(out, "{address}: no history")?;
            }
            for entry in history {
                let c = entry.change;
                // A removed record shows as its empty value: "-".
                let value = match entry.emptied {
                    true => "-",
                    false => c.value.as_str(),
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{value}\t{}\t{}",
                    timestamp(c.at),
                    c.address,
                    c.channel,
                    c.scope,
                    c.source,
                    c.evidence
                )?;
            }
        }
        ConsentCommand::Import {
            file,
            value,
            scope,
            evidence,
        } => import(config, store, &file, value, scope, evidence).await?,
        ConsentCommand::Erase {
            address,
            lift,
            evidence,
        } => {
            let erasure = crate::daemon::load_erasure(config)?.ok_or_else(|| {
                CliError::Usage(
                    "erasure needs [consent] erasure_key: a key file of its own (make one with `optout-milter token keygen FILE`); never change it once addresses are erased".into(),
                )
            })?;
            // Email only: an erasure's pseudonym suppresses email.
            let address = config.addresses.normalize(&address)?;
            if lift {
                let lifted =
                    crate::erase::lift(store, &erasure, &address, Source::Cli, &evidence).await?;
                if !lifted {
                    return Err(CliError::Usage(format!(
                        "{address} is not erased; nothing to lift"
                    )));
                }
                writeln!(
                    out,
                    "erasure lifted: {address}: mail to it follows its records again"
                )?;
            } else {
                let erased = crate::erase::erase(store, &erasure, &address, &evidence).await?;
                writeln!(
                    out,
                    "erased: {address}: {} history entries deleted; mail to it stays refused (kept as {})",
                    erased.history_deleted, erased.pseudonym
                )?;
            }
        }
        ConsentCommand::Export => {
            let mut csv = csv::Writer::from_writer(out);
            csv.write_record(import::EXPORT_COLUMNS)?;
            for_each_record(store, |r| {
                csv.write_record([
                    r.address.as_str(),
                    r.channel.as_str(),
                    r.scope.as_str(),
                    r.value.as_str(),
                    r.source.as_str(),
                    &timestamp(r.updated_at),
                    &r.evidence,
                ])
                .map_err(CliError::from)
            })
            .await?;
            csv.flush()?;
        }
    }
    Ok(())
}

async fn import(
    config: &Config,
    store: &dyn ConsentStore,
    path: &std::path::Path,
    value: Option<ConsentValue>,
    scope: Option<Scope>,
    evidence: String,
) -> Result<(), CliError> {
    let import_error = |source| CliError::Import {
        path: path.to_owned(),
        source,
    };
    let evidence = match evidence.is_empty() {
        true => format!("imported from {}", path.display()),
        false => evidence,
    };
    let request = import::Request {
        value,
        scope,
        evidence,
    };
    let table = match path.as_os_str() == "-" {
        true => import::read(io::stdin().lock(), request.purpose()),
        false => File::open(path)
            .map_err(import::ImportError::from)
            .and_then(|file| import::read(file, request.purpose())),
    }
    .map_err(import_error)?;
    for note in &table.notes {
        eprintln!("{}: {note}", path.display());
    }
    let erasure = crate::daemon::load_erasure(config)?;
    let tally = import::apply(table, request, &config.addresses, erasure.as_deref(), store)
        .await
        .map_err(|e| match e {
            import::ApplyError::ValueForExport => CliError::Usage(format!(
                "{}: a file of `consent export` carries each row's value and scope; drop --value and --scope",
                path.display()
            )),
            import::ApplyError::Store(e) => e.into(),
        })?;
    for (line, error) in &tally.bad {
        eprintln!("{}:{line}: {error}", path.display());
    }
    if tally.erased > 0 {
        eprintln!(
            "{}: {} rows are erased addresses: recorded, and mail to them stays refused until `consent erase --lift`",
            path.display(),
            tally.erased
        );
    }
    println!(
        "{}: {} changed, {} unchanged, {} skipped by status, {} bad",
        path.display(),
        tally.changed,
        tally.unchanged,
        tally.skipped,
        tally.bad.len()
    );
    match tally.bad.len() {
        0 => Ok(()),
        bad => Err(CliError::BadRows {
            bad,
            total: tally.total,
        }),
    }
}

async fn for_each_record(
    store: &dyn ConsentStore,
    mut each: impl FnMut(&ConsentRecord) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let mut after: Option<RecordKey> = None;
    loop {
        let page = store.page(after.as_ref(), PAGE).await?;
        for record in &page {
            each(record)?;
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => {
                after = Some(RecordKey {
                    address: last.address.as_str().to_owned(),
                    channel: last.channel,
                    scope: last.scope.clone(),
                });
            }
            _ => return Ok(()),
        }
    }
}

fn record_line(r: &ConsentRecord) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        r.address,
        r.channel,
        r.scope,
        r.value,
        r.source,
        timestamp(r.updated_at),
        r.evidence
    )
}

fn default_word(config: &Config) -> &'static str {
    match config.consent.default {
        crate::consent::DefaultConsent::Yes => "y: mail is allowed",
        crate::consent::DefaultConsent::No => "n: opt-in only, mail is refused",
    }
}

fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
