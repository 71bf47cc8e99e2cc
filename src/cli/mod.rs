//! The command line: parse arguments with clap, load the config, run one command.
//!
//! Every command takes `--config`; `--store` (and `--socket` for `serve`) override the
//! file, so one config serves the daemon and an operator's one-off commands alike.

mod check;
mod consent;
mod ingest;
pub mod logs;
pub mod manual;
mod serve;
mod token;

use crate::{
    config::{self, Config, ConfigError, Overrides},
    consent::{AddressError, ConsentValue, Scope},
    import::ImportError,
    store::{self, StoreError},
};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Enforces email opt-outs at the MTA.
#[derive(Debug, Parser)]
#[command(name = "optout-milter", version, about)]
pub struct Cli {
    /// The config file.
    #[arg(long, global = true, default_value = config::DEFAULT_PATH, env = "OPTOUT_MILTER_CONFIG")]
    pub config: PathBuf,
    /// The store URL, overriding `[store] url`.
    #[arg(long, global = true)]
    pub store: Option<String>,
    /// How log lines are written to standard error: `text`, or `json` (one object a line,
    /// for a log collector).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "OPTOUT_MILTER_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the milter. Exits 78 (EX_CONFIG) when only a person can mend what stopped it
    /// (the config, a key or certificate file, a missing store, a schema the owner must
    /// bring forward), 1 for what may clear by itself (a database that does not answer, a
    /// socket in use), which the unit retries.
    Serve {
        /// The milter socket, overriding `[milter] socket`.
        #[arg(long)]
        socket: Option<String>,
        /// Create the store if it does not exist (as `init` does). Without it a missing
        /// store is an error: it was lost, and an empty one would let mail through to
        /// everyone who opted out.
        #[arg(long)]
        init: bool,
    },
    /// Create the store (if it does not exist) and bring its schema up to date.
    Init,
    /// Check the config file and everything it names (key files, TLS files, the store)
    /// as `serve` would, without binding sockets; exit non-zero on a problem.
    CheckConfig,
    /// Read and change recorded consent.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Read one unsubscribe mail on standard input (for Postfix's pipe transport).
    /// Exits 0 when done, 65 for an unusable message, 75 for a temporary failure, 78 for a
    /// configuration error.
    Ingest {
        /// The envelope sender (`${sender}`; empty for bounces).
        #[arg(long)]
        sender: Option<String>,
        /// The envelope recipient (`${recipient}`); may be repeated.
        #[arg(long = "recipient")]
        recipients: Vec<String>,
    },
    /// Mint and inspect unsubscribe tokens, and create token keys.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Whole-store operations.
    #[command(subcommand)]
    Store(StoreCommand),
    /// The admin API.
    #[command(subcommand)]
    Api(ApiCommand),
    /// Print a manual page in roff (read it with `man -l -`): `optout-milter.8`, the
    /// program, or `optout-milter.toml.5`, the config file.
    Manual { page: manual::Page },
    /// Print shell completions: bash, zsh, fish, elvish or powershell.
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Print the admin API's OpenAPI document (the one `GET /v1/openapi.json` serves).
    Openapi,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy a store to another backend (SQLite to PostgreSQL and back): current state,
    /// history, token subjects and the ids of inbound messages already applied, compared
    /// by row counts and checksums at the end. Safe to re-run. Stop the daemons writing to
    /// the source first.
    Migrate {
        /// The store to copy, e.g. sqlite:///var/lib/optout-milter/consent.db
        #[arg(long)]
        from: String,
        /// The store to copy into (created if missing), e.g. postgres://owner@db/optout
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token for an address and list, and show the links it makes.
    Mint {
        address: String,
        /// A list id, or * for all marketing.
        #[arg(long, default_value = "*")]
        list: Scope,
    },
    /// Verify a token and show whom it is for. Takes the token, the https link or the
    /// unsubscribe+TOKEN address.
    Inspect { token: String },
    /// Create a new key file of 32 random bytes, readable by its owner only.
    Keygen { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Record a consent value for an address.
    Set {
        /// An email address, or a phone number with `--channel sms`.
        address: String,
        /// y, n, p, u, dy, dn, LI, CT, CP, VI or PI.
        #[arg(long)]
        value: ConsentValue,
        /// A list id, or * for all marketing.
        #[arg(long, default_value = "*")]
        scope: Scope,
        /// email, or sms (the address is then a phone number: +CC…, or national with
        /// [sms] default_region). The milter enforces email.
        #[arg(long, default_value = "email")]
        channel: String,
        /// Why: a ticket number, who asked, how it was verified.
        #[arg(long, default_value = "")]
        evidence: String,
    },
    /// Show the current consent of an address.
    Get { address: String },
    /// List every current record.
    List,
    /// Show the audit trail of an address.
    History { address: String },
    /// Erase an address (GDPR art. 17) and keep it suppressed: its records, history and
    /// token subjects are deleted, and an opt-out stays under a keyed pseudonym, so mail
    /// to it is still refused. Needs `[consent] erasure_key`.
    Erase {
        address: String,
        /// Lift an earlier erasure instead: mail to the address follows its records again.
        #[arg(long)]
        lift: bool,
        /// Who asked and how it was verified; kept with the pseudonym.
        #[arg(long, default_value = "")]
        evidence: String,
    },
    /// Import addresses from a file (one per line, an ESP's CSV export, or the output of
    /// `consent export`, which comes back whole); `-` reads standard input.
    Import {
        file: PathBuf,
        /// The value given to every imported address (default n). Not for a file of
        /// `consent export`, whose rows carry their own.
        #[arg(long)]
        value: Option<ConsentValue>,
        /// A list id, or * for all marketing (the default). Not for a file of `consent
        /// export`.
        #[arg(long)]
        scope: Option<Scope>,
        #[arg(long, default_value = "")]
        evidence: String,
    },
    /// Write every current record as CSV to standard output.
    Export,
}

/// A command that failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid address")]
    Address(#[from] AddressError),
    #[error("invalid address or phone number")]
    Identity(#[from] crate::consent::KeyError),
    #[error("cannot import {path}")]
    Import {
        path: PathBuf,
        #[source]
        source: ImportError,
    },
    #[error("{0}")]
    Usage(String),
    #[error("the config has {0} problem(s), listed above")]
    Check(usize),
    #[error("{bad} of {total} rows could not be imported (listed above); the others were")]
    BadRows { bad: usize, total: usize },
    #[error(transparent)]
    Serve(#[from] crate::daemon::DaemonError),
    #[error(transparent)]
    Copy(#[from] crate::store::copy::CopyError),
    #[error(transparent)]
    Key(#[from] crate::token::KeyError),
    #[error("invalid token")]
    Token(#[from] crate::token::TokenError),
    #[error(transparent)]
    Intake(#[from] crate::intake::IntakeError),
    /// Any failure of `ingest`, which must exit with a sysexits status.
    #[error(transparent)]
    Ingest(Box<CliError>),
    #[error("cannot read or write")]
    Output(#[from] std::io::Error),
    #[error("cannot write the output")]
    Csv(#[from] csv::Error),
}

/// sysexits: the data was unusable.
const EX_DATAERR: u8 = 65;
/// sysexits: try again later.
const EX_TEMPFAIL: u8 = 75;
/// sysexits: the configuration is wrong; retrying will not help until it is fixed.
const EX_CONFIG: u8 = 78;

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Ingest(inner) => match inner.as_ref() {
                CliError::Intake(e) if !e.is_temporary() => EX_DATAERR,
                CliError::Config(_) | CliError::Usage(_) | CliError::Key(_) => EX_CONFIG,
                _ => EX_TEMPFAIL,
            },
            // `serve` under systemd: the unit restarts the daemon after a failure, which
            // brings it back once the database answers again, but not after EX_CONFIG
            // (`RestartPreventExitStatus=78`), which repeating cannot mend.
            CliError::Config(_) => EX_CONFIG,
            CliError::Serve(e) if e.needs_an_operator() => EX_CONFIG,
            _ => 1,
        }
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let ingest = matches!(cli.command, Command::Ingest { .. });
    run_command(cli).await.map_err(|e| {
        if ingest {
            CliError::Ingest(Box::new(e))
        } else {
            e
        }
    })
}

async fn run_command(cli: Cli) -> Result<(), CliError> {
    // Making a key needs no config: it is often the first step of writing one.
    if let Command::Token(TokenCommand::Keygen { file }) = &cli.command {
        return token::keygen(file);
    }
    // Nor do the manuals and completions.
    match &cli.command {
        Command::Manual { page } => {
            let mut out = std::io::stdout().lock();
            manual::write(*page, &mut out).map_err(CliError::Output)?;
            return Ok(());
        }
        Command::Completions { shell } => {
            manual::completions(*shell, &mut std::io::stdout().lock());
            return Ok(());
        }
        _ => {}
    }
    // Nor does the API's description.
    if let Command::Api(ApiCommand::Openapi) = &cli.command {
        print!("{}", crate::api::openapi_json());
        return Ok(());
    }
    // Nor does a copy between two named stores.
    if let Command::Store(StoreCommand::Migrate { from, to }) = &cli.command {
        for tally in store::copy::copy(from, to).await? {
            println!(
                "{}\t{} rows\tsha256 {}",
                tally.table, tally.rows, tally.sha256
            );
        }
        println!(
            "copied and verified: {} -> {}",
            store::redact(from),
            store::redact(to)
        );
        return Ok(());
    }
    let socket = match &cli.command {
        Command::Serve { socket, .. } => socket.clone(),
        _ => None,
    };
    let overrides = Overrides {
        store_url: cli.store.clone(),
        socket,
    };
    let config = Config::load(&cli.config, &overrides)?;
    match cli.command {
        Command::Serve { init, .. } => serve::run(config, overrides, init).await?,
        Command::Init => {
            drop(store::open_or_create(&config.store_url).await?);
            println!("store ready: {}", store::redact(&config.store_url));
        }
        Command::CheckConfig => check::run(&config)?,
        Command::Consent(command) => consent::run(&config, command).await?,
        Command::Token(command) => token::run(&config, command).await?,
        Command::Ingest { sender, recipients } => ingest::run(&config, sender, recipients).await?,
        Command::Store(_)
        | Command::Api(_)
        | Command::Manual { .. }
        | Command::Completions { .. } => {
            unreachable!("handled before the config is read")
        }
    }
    Ok(())
}
