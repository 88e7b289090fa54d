//! Start-up time: from starting `tidings serve` on an empty data directory until it says it
//! is ready (listening, database open, endpoint key created).

use crate::service::Service;
use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many starts to time.
    #[arg(long, default_value_t = 10)]
    runs: usize,
}

pub fn run(args: &Args) -> Result<()> {
    let mut times = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let service = Service::spawn(&[])?;
        times.push(service.startup.expect("we started it").as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "startup on an empty data directory ({} runs, process start to ready): min {:.1} ms, median {:.1} ms, max {:.1} ms",
        args.runs,
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
    Ok(())
}
