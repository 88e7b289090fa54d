//! The run's report: one screen on stdout, the same (and the samples' trends) as JSON.

use super::Args;
use super::ledger::Verdict;
use super::schedule::Fault;
use super::trend::{Sample, Trend, trend};
use crate::load::percentile;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Everything the report shows.
pub struct Report<'a> {
    pub seed: u64,
    pub args: &'a Args,
    pub plan: &'a [(f64, Fault)],
    pub verdict: &'a Verdict,
    /// Per process name: (pid, sample); a new pid is a restart.
    pub samples: &'a BTreeMap<String, Vec<(u32, Sample)>>,
    pub warm_up: f64,
    pub calm: f64,
    pub end_sending: f64,
    pub end: f64,
    pub hostile: &'a BTreeMap<String, usize>,
}

/// A measure's name, how to read it from a sample, and the climb below which it is not flagged.
type Measure = (&'static str, fn(&Sample) -> f64, f64);

/// The measures of a sample.
const MEASURES: [Measure; 3] =
    [("rss", |s| s.rss, 16e6), ("fds", |s| s.fds, 32.0), ("disk", |s| s.disk, 16e6)];

impl Report<'_> {
    /// Trends per process and measure, over its last incarnation after warm-up.
    fn trends(&self) -> BTreeMap<String, Vec<(&'static str, Option<Trend>)>> {
        self.samples
            .iter()
            .map(|(name, samples)| {
                let last_pid = samples.last().map(|(pid, _)| *pid);
                let own: Vec<&Sample> =
                    samples.iter().filter(|(pid, _)| Some(*pid) == last_pid).map(|(_, s)| s).collect();
                let trends = MEASURES
                    .iter()
                    .map(|(measure, get, floor)| {
                        let points: Vec<(f64, f64)> = own.iter().map(|s| (s.at, get(s))).collect();
                        (*measure, trend(&points, self.warm_up, 60.0, *floor))
                    })
                    .collect();
                (name.clone(), trends)
            })
            .collect()
    }

    fn latencies(values: &[f64]) -> (f64, f64, usize) {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        (percentile(&sorted, 0.5), percentile(&sorted, 0.99), sorted.len())
    }

    /// Prints the report.
    pub fn print(&self) {
        let v = self.verdict;
        println!(
            "\nsoak report: seed {}, {:.0} s ({:.0} s sending), {} faults",
            self.seed,
            self.end,
            self.end_sending,
            self.plan.len()
        );
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, fault) in self.plan {
            *kinds.entry(fault.name()).or_default() += 1;
        }
        println!(
            "  faults: {}",
            kinds.iter().map(|(k, n)| format!("{k} x{n}")).collect::<Vec<_>>().join(", ")
        );
        println!(
            "  direct: {} posted, {} answered 201, {} refused, {} unanswered; {} delivered and acked, {} expired (TTL)",
            v.posted, v.accepted, v.refused, v.unanswered, v.delivered, v.expired
        );
        println!(
            "  redelivered (allowed): {} unacked after a reconnect, {} after an unconfirmed ack, {} after an ack during a Redis outage; {} delivered without a 201",
            v.redelivered_unacked,
            v.redelivered_unconfirmed_ack,
            v.redelivered_outage_ack,
            v.delivered_unaccepted
        );
        println!(
            "  hub: {} sends, {} done; recipients {} accepted + {} failed by the hub, {} received",
            v.hub_sends, v.hub_done, v.hub_accepted, v.hub_failed, v.hub_received
        );
        for (what, values) in [("during faults", &v.latency_faults), ("calm / recovered", &v.latency_calm)] {
            let (p50, p99, n) = Self::latencies(values);
            println!("  POST to delivery {what}: p50 {p50:.1} ms, p99 {p99:.1} ms ({n} messages)");
        }
        println!("  resources after warm-up (last value, change per minute; UP = upward trend):");
        for (name, trends) in self.trends() {
            let line: Vec<String> = trends
                .iter()
                .map(|(measure, t)| match t {
                    Some(t) => format!(
                        "{measure} {} ({:+.1}/min){}",
                        human(measure, t.last),
                        if *measure == "fds" { t.per_minute } else { t.per_minute / 1e6 },
                        if t.upward { " UP" } else { "" }
                    ),
                    None => format!("{measure} (restarted late)"),
                })
                .collect();
            println!("    {name:14} {}", line.join(", "));
        }
        if !self.hostile.is_empty() {
            let line: Vec<String> = self.hostile.iter().map(|(k, n)| format!("{k} x{n}")).collect();
            println!("  hostile client: {}", line.join("; "));
        }
        if v.violations.is_empty() {
            println!("  ledger: balanced, 0 violations");
        } else {
            println!("  ledger: {} VIOLATIONS", v.violations.len());
            for violation in v.violations.iter().take(20) {
                println!("    {}: {}", violation.kind, violation.detail);
            }
        }
    }

    /// The report as JSON.
    pub fn json(&self) -> Value {
        let v = self.verdict;
        let latency = |values: &[f64]| {
            let (p50, p99, n) = Self::latencies(values);
            json!({"p50_ms": p50, "p99_ms": p99, "messages": n})
        };
        let trends: BTreeMap<String, Value> = self
            .trends()
            .into_iter()
            .map(|(name, trends)| {
                let measures: BTreeMap<&str, Value> = trends
                    .into_iter()
                    .map(|(m, t)| {
                        (m, t.map_or(Value::Null, |t| json!({"mean": t.mean, "last": t.last, "per_minute": t.per_minute, "upward": t.upward})))
                    })
                    .collect();
                (name, json!(measures))
            })
            .collect();
        json!({
            "seed": self.seed,
            "minutes": self.args.minutes,
            "agents": self.args.agents,
            "rate": self.args.rate,
            "hub_every": self.args.hub_every,
            "hub_store": if self.args.hub_postgres.is_some() { "postgres" } else { "embedded" },
            "phases": {"warm_up_end": self.warm_up, "calm_start": self.calm, "sending_end": self.end_sending, "end": self.end},
            "faults": self.plan.iter().map(|(at, f)| json!({"at": at, "fault": format!("{f:?}")})).collect::<Vec<_>>(),
            "direct": {
                "posted": v.posted, "accepted": v.accepted, "refused": v.refused, "unanswered": v.unanswered,
                "delivered": v.delivered, "expired": v.expired, "delivered_unaccepted": v.delivered_unaccepted,
                "redelivered_unacked": v.redelivered_unacked,
                "redelivered_unconfirmed_ack": v.redelivered_unconfirmed_ack,
                "redelivered_outage_ack": v.redelivered_outage_ack,
            },
            "hub": {"sends": v.hub_sends, "done": v.hub_done, "accepted": v.hub_accepted, "failed": v.hub_failed, "received": v.hub_received},
            "latency": {"during_faults": latency(&v.latency_faults), "calm": latency(&v.latency_calm)},
            "resources": trends,
            "hostile": self.hostile,
            "violations": v.violations.iter().map(|x| json!({"kind": x.kind, "detail": x.detail})).collect::<Vec<_>>(),
        })
    }
}

fn human(measure: &str, value: f64) -> String {
    match measure {
        "fds" => format!("{value:.0}"),
        _ => format!("{:.1} MB", value / 1e6),
    }
}
