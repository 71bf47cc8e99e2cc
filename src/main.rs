//! The `optout-milter` binary: parse arguments, set up logging, run, print errors.

use clap::Parser;
use optout_milter::cli::{self, Cli};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::logs::init(cli.log_format);
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
