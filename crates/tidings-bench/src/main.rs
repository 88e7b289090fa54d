//! `tidings-bench`: Tidings' benchmarks. Each one measures a peer in the same run where one
//! exists, because this kind of machine is shared and noisy: ratios hold up, absolute
//! numbers drift. Results and commands are recorded in `docs/benchmarks.md`.
//!
//! The push-service benchmarks start a `tidings serve` of their own (from the same build),
//! or measure any push service given by `--url ws://...`.

mod abuse;
mod broadcast;
mod connections;
mod hub;
mod hub_lanes;
mod load;
mod prepare;
mod service;
mod soak;
mod startup;
mod storm;
mod throughput;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tidings-bench", about = "Tidings benchmarks, with peers measured in the same run")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Prepared push requests per second: encrypt a payload and attach VAPID, per subscription.
    Prepare(prepare::Args),
    /// Push service memory per idle, registered connection.
    Connections(connections::Args),
    /// `tidings broadcast` to a local sink: a million subscriptions, memory, npm web-push beside it.
    Broadcast(broadcast::Args),
    /// `tidings hub`: subscribe requests per second, and a send to everyone beside `tidings broadcast`.
    Hub(hub::Args),
    /// `tidings hub`: a targeted send's latency while a broadcast to a slow push service runs.
    HubLanes(hub_lanes::Args),
    /// Push service end-to-end throughput and latency (POST to delivered and acked).
    Throughput(throughput::Args),
    /// Many user agents reconnecting at once to stored messages.
    Storm(storm::StormArgs),
    /// One user agent reconnecting to a large backlog.
    Backlog(storm::BacklogArgs),
    /// Push service start-up time on an empty data directory.
    Startup(startup::Args),
    /// Push service memory, open files and a well-behaved client's latency under attacks.
    Abuse(abuse::Args),
    /// The whole system for a while under load with seeded faults; a ledger that must balance.
    Soak(soak::Args),
    /// (internal) a process holding connections for `connections`.
    #[command(hide = true)]
    ConnectWorker(connections::WorkerArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Prepare(args) => prepare::run(&args),
        Bench::Connections(args) => connections::run(&args),
        Bench::Throughput(args) => throughput::run(&args),
        Bench::Broadcast(args) => broadcast::run(&args),
        Bench::Hub(args) => hub::run(&args),
        Bench::HubLanes(args) => hub_lanes::run(&args),
        Bench::Storm(args) => storm::storm(&args),
        Bench::Backlog(args) => storm::backlog(&args),
        Bench::Startup(args) => startup::run(&args),
        Bench::Abuse(args) => abuse::run(&args),
        Bench::Soak(args) => soak::run(&args),
        Bench::ConnectWorker(args) => connections::worker(&args),
    }
}
