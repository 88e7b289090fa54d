//! `tidings`: one binary for every part of Tidings. Each subcommand lives in [`cmd`].

mod cmd;
mod exit;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Self-hostable Web Push: serve, send, listen, hub.
#[derive(Debug, Parser)]
#[command(name = "tidings", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the push service: user agents (Firefox) connect, senders POST to their endpoints.
    Serve(Box<cmd::serve::ServeArgs>),
    /// Be a user agent: subscribe at a push service and print (or handle) every message.
    Listen(Box<cmd::listen::ListenArgs>),
    /// Create and check VAPID keys (the application server's identity).
    #[command(subcommand)]
    Vapid(cmd::vapid::VapidCommand),
    /// Send one message to a list of subscriptions (any length), with a report of failures.
    Broadcast(Box<cmd::broadcast::BroadcastArgs>),
    /// Send one message to one subscription on any push service.
    Send(Box<cmd::send::SendArgs>),
    /// Run the hub: subscriptions, topics and a REST API for your app's backend (or manage its keys).
    Hub(Box<cmd::hub::HubArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => cmd::serve::run(*args),
        Command::Listen(args) => cmd::listen::run(*args),
        Command::Vapid(command) => cmd::vapid::run(command),
        Command::Send(args) => cmd::send::run(*args),
        Command::Broadcast(args) => cmd::broadcast::run(*args),
        Command::Hub(args) => cmd::hub::run(*args),
    };
    match result {
        Ok(code) => code.into(),
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::Code::Usage.into()
        }
    }
}
