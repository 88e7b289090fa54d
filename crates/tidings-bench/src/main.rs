//! `tidings-bench`: Tidings' benchmarks. Each one measures a peer in the same run where one
//! exists, because this kind of machine is shared and noisy: ratios hold up, absolute
//! numbers drift. Results and commands are recorded in `docs/benchmarks.md`.

mod prepare;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().bench {
        Bench::Prepare(args) => prepare::run(&args),
    }
}
