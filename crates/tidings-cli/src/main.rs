//! `tidings`: one binary for every part of Tidings. Each subcommand lives in [`cmd`].

mod cmd;
mod exit;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Self-hostable Web Push: send, serve, listen.
#[derive(Debug, Parser)]
#[command(name = "tidings", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and check VAPID keys (the application server's identity).
    #[command(subcommand)]
    Vapid(cmd::vapid::VapidCommand),
    /// Send one message to one subscription on any push service.
    Send(Box<cmd::send::SendArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Vapid(command) => cmd::vapid::run(command),
        Command::Send(args) => cmd::send::run(*args),
    };
    match result {
        Ok(code) => code.into(),
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::Code::Usage.into()
        }
    }
}
