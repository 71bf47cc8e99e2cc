//! The `optout-milter` binary: parse arguments, set up logging, run, print errors.

use clap::Parser;
use optout_milter::cli::{self, Cli};
use std::{io::IsTerminal, process::ExitCode};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("OPTOUT_MILTER_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        cli::LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        cli::LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    // The daemon uses both cores; a one-shot command (`ingest` runs once per mail) starts
    // faster on a single thread.
    let runtime = match cli.command {
        cli::Command::Serve { .. } => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    }
    .enable_all()
    .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("optout-milter: cannot start the async runtime: {error}");
            return ExitCode::from(71); // EX_OSERR
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("optout-milter: {}", optout_milter::error_chain(&error));
            ExitCode::from(error.exit_code())
        }
    }
}
