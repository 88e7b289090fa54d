//! `tidings broadcast`: one message to a list of subscriptions of any length, with progress,
//! a report of every subscription that did not take it, and a way to resume.

use super::message::{MessageArgs, is_stdin};
use crate::exit::Code;
use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use std::io::{BufRead, BufReader, IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidings_sender::fanout::{FanoutConfig, Outcome, Report, Target};
use tidings_sender::{Subscription, fanout};
use tidings_wire::PushSubscription;
use tokio::sync::{mpsc, watch};

#[derive(Debug, Args)]
#[command(after_help = "Input: one PushSubscription JSON object per line, optionally with an \"id\" \
(string or number) to name it in the report.\n\n\
Report (JSON lines, to --report or standard output): one line per subscription that did not \
take the message: {\"line\", \"id\", \"endpoint\" (masked), \"outcome\": gone|rejected|failed|invalid, \
\"status\", \"errno\", \"message\", \"attempts\"}; after an interruption, a last line \
{\"interrupted\": true, \"resume_from_line\": N} for --resume.\n\n\
Exit status: 0 all accepted, 3 the only failures are gone subscriptions (delete them), \
4 some were rejected, invalid or failed after retries, 2 usage error, 130 interrupted.\n\n\
Example:\n  tidings broadcast --subscriptions subs.jsonl --payload 'Hello everyone' \\\n    \
--vapid-keys vapid.json --vapid-subject mailto:ops@example.com --report report.jsonl")]
pub struct BroadcastArgs {
    /// Subscriptions, one PushSubscription JSON per line (an "id" member is kept), or - for stdin.
    #[arg(long, value_name = "FILE|-")]
    subscriptions: PathBuf,
    #[command(flatten)]
    message: MessageArgs,
    /// Requests in flight at once (each push service also gets at most 128).
    #[arg(long, value_name = "N", default_value_t = 256)]
    concurrency: usize,
    /// Write the report here instead of standard output.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Continue an interrupted broadcast from where its report says it stopped.
    #[arg(long, value_name = "REPORT")]
    resume: Option<PathBuf>,
}

/// A line of the input.
#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(flatten)]
    subscription: PushSubscription,
}

fn target(index: u64, text: &str) -> Target {
    match serde_json::from_str::<Line>(text) {
        Ok(line) => Target {
            index,
            id: line.id.map(|id| match id {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
            subscription: Subscription::from_json(&line.subscription).map_err(|e| e.to_string()),
        },
        Err(e) => Target { index, id: None, subscription: Err(format!("not PushSubscription JSON: {e}")) },
    }
}

/// Where an interrupted broadcast stopped, from its report.
fn resume_point(report: &Path) -> Result<u64> {
    let file = std::fs::File::open(report).with_context(|| format!("cannot read {}", report.display()))?;
    let mut point = None;
    for line in BufReader::new(file).lines() {
        let line = line?;
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
            && let Some(n) = value.get("resume_from_line").and_then(serde_json::Value::as_u64)
        {
            point = Some(n);
        }
    }
    point.with_context(|| {
        format!(
            "{} is not the report of an interrupted broadcast (it has no resume_from_line)",
            report.display()
        )
    })
}

/// Counts lines, for progress (only for regular files; stdin is not read twice).
fn count_lines(path: &Path) -> Option<u64> {
    if is_stdin(path) {
        return None;
    }
    let mut reader = BufReader::with_capacity(1 << 20, std::fs::File::open(path).ok()?);
    let mut count = 0;
    loop {
        let buf = reader.fill_buf().ok()?;
        if buf.is_empty() {
            return Some(count);
        }
        count += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let len = buf.len();
        reader.consume(len);
    }
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    gone: u64,
    rejected: u64,
    failed: u64,
    invalid: u64,
}

impl Tally {
    fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Accepted => self.accepted += 1,
            Outcome::Gone { .. } => self.gone += 1,
            Outcome::Rejected { .. } => self.rejected += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Invalid { .. } => self.invalid += 1,
        }
    }

    fn done(&self) -> u64 {
        self.accepted + self.gone + self.rejected + self.failed + self.invalid
    }

    fn line(&self) -> String {
        format!(
            "{} accepted, {} gone, {} rejected, {} failed, {} invalid",
            self.accepted, self.gone, self.rejected, self.failed, self.invalid
        )
    }
}

fn report_line(report: &Report) -> serde_json::Value {
    let mut line = serde_json::json!({
        "line": report.index,
        "id": report.id,
        "endpoint": report.endpoint,
        "outcome": report.outcome.kind(),
        "attempts": report.attempts,
    });
    match &report.outcome {
        Outcome::Gone { status } => line["status"] = (*status).into(),
        Outcome::Rejected { status, errno, message } => {
            line["status"] = (*status).into();
            line["errno"] = (*errno).into();
            line["message"] = message.clone().into();
        }
        Outcome::Failed { status, reason } => {
            line["status"] = (*status).into();
            line["message"] = reason.clone().into();
        }
        Outcome::Invalid { reason } => line["message"] = reason.clone().into(),
        Outcome::Accepted => {}
    }
    line
}

pub fn run(args: BroadcastArgs) -> Result<Code> {
    if is_stdin(&args.subscriptions) && args.message.payload_file.as_deref().is_some_and(is_stdin) {
        bail!("--subscriptions and --payload-file cannot both read stdin");
    }
    let message = args.message.message()?;
    let signer = args.message.signer()?.map(Arc::new);
    let client = args.message.client()?;
    let resume_from = args.resume.as_deref().map(resume_point).transpose()?.unwrap_or(1);
    let input: Box<dyn BufRead + Send> = if is_stdin(&args.subscriptions) {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let file = std::fs::File::open(&args.subscriptions)
            .with_context(|| format!("cannot read {}", args.subscriptions.display()))?;
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let mut out: Box<dyn Write + Send> = match &args.report {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let total = count_lines(&args.subscriptions).map(|n| n.saturating_sub(resume_from - 1));
    let config = FanoutConfig { concurrency: args.concurrency.max(1), ..Default::default() };

    let (stop_tx, stop) = watch::channel(false);
    let (targets_tx, targets) = mpsc::channel::<Target>(1024);
    let reader_stop = stop.clone();
    let reader = std::thread::spawn(move || {
        for (n, line) in input.lines().enumerate() {
            let index = n as u64 + 1;
            if *reader_stop.borrow() {
                break;
            }
            let target = match line {
                Ok(line) if index < resume_from || line.trim().is_empty() => continue,
                Ok(line) => target(index, &line),
                Err(e) => Target { index, id: None, subscription: Err(format!("unreadable line: {e}")) },
            };
            if targets_tx.blocking_send(target).is_err() {
                break;
            }
        }
    });

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let started = Instant::now();
    let (tally, last_started, interrupted) = runtime.block_on(async {
        let (results_tx, mut results) = mpsc::channel::<Report>(1024);
        let stopping = stop_tx.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nstopping: finishing the requests under way (Ctrl-C again to quit at once)");
                let _ = stopping.send(true);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let engine = tokio::spawn(fanout(client, message, signer, config, targets, results_tx, stop.clone()));
        let progress = Progress::new(total);
        let mut tally = Tally::default();
        let mut last_started = resume_from.saturating_sub(1);
        while let Some(report) = results.recv().await {
            last_started = last_started.max(report.index);
            tally.add(&report.outcome);
            if report.outcome != Outcome::Accepted {
                let _ = writeln!(out, "{}", report_line(&report));
            }
            progress.update(&tally, started);
        }
        let _ = engine.await;
        progress.finish();
        let interrupted = *stop.borrow();
        if interrupted {
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({"interrupted": true, "resume_from_line": last_started + 1})
            );
        }
        let _ = out.flush();
        (tally, last_started, interrupted)
    });
    drop(stop_tx);
    let _ = reader.join();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} subscriptions in {seconds:.1} s ({:.0}/s): {}",
        tally.done(),
        tally.done() as f64 / seconds.max(1e-9),
        tally.line()
    );
    if interrupted {
        eprintln!(
            "interrupted: every line before {} has its outcome; continue with --resume {}",
            last_started + 1,
            args.report.as_ref().map_or("<the report>".into(), |p| p.display().to_string())
        );
        return Ok(Code::Interrupted);
    }
    Ok(if tally.rejected + tally.failed + tally.invalid > 0 {
        Code::Rejected
    } else if tally.gone > 0 {
        Code::Gone
    } else {
        Code::Ok
    })
}

/// A progress bar on a terminal, a line every five seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_line: std::cell::Cell<Instant>,
}

impl Progress {
    fn new(total: Option<u64>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = total.map_or_else(indicatif::ProgressBar::new_spinner, indicatif::ProgressBar::new);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {per_sec} eta {eta} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self { bar, last_line: std::cell::Cell::new(Instant::now()) }
    }

    fn update(&self, tally: &Tally, started: Instant) {
        match &self.bar {
            Some(bar) => {
                bar.set_position(tally.done());
                if tally.done().is_multiple_of(256) {
                    bar.set_message(tally.line());
                }
            }
            None if self.last_line.get().elapsed() >= Duration::from_secs(5) => {
                self.last_line.set(Instant::now());
                let rate = tally.done() as f64 / started.elapsed().as_secs_f64();
                eprintln!("{} done ({rate:.0}/s): {}", tally.done(), tally.line());
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
