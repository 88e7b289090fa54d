//! The soak run's books, without I/O: what was posted and answered, what each user agent
//! received and acknowledged, what the hub said about each send, and the verdict at the end.
//!
//! Everything is recorded as it happens, with times in seconds since the run began, and
//! judged only in [`Ledger::check`], so that the order in which the run's tasks report (a
//! delivery may be reported before the 201 that answered its POST) does not matter.
//!
//! An ack counts only once it is *confirmed*: the Mozilla push protocol has no reply to an
//! ack, but the service handles a connection's frames in order, so a ping sent after the
//! ack and answered proves the ack was handled. A message that comes back after an
//! unconfirmed ack (the connection died in between) is allowed and counted; one that comes
//! back after a confirmed ack is a violation, unless the ack was handled while storage was
//! down (the service then keeps the message, by design, and says so).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A user agent of the run, by index.
pub type Agent = u32;

/// What a payload names: a direct POST of the run, or a hub send (by the run's own number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// The n-th direct POST.
    Direct(u64),
    /// The n-th hub send.
    Hub(u64),
}

impl Key {
    /// The plaintext carrying this key.
    pub fn payload(self) -> String {
        match self {
            Self::Direct(n) => format!("d:{n}"),
            Self::Hub(n) => format!("h:{n}"),
        }
    }

    /// The key a decrypted payload carries, if it is one of ours.
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let (kind, n) = text.split_once(':')?;
        let n = n.parse().ok()?;
        match kind {
            "d" => Some(Self::Direct(n)),
            "h" => Some(Self::Hub(n)),
            _ => None,
        }
    }
}

/// How a direct POST was answered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer {
    /// 201, at this time.
    Accepted(f64),
    /// Another status.
    Refused(u16),
    /// No answer (connection refused or cut).
    Unanswered,
}

/// A hub send's counts, as its status reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubCounts {
    /// Recipients.
    pub queued: u64,
    /// Taken by the push service.
    pub accepted: u64,
    /// 404/410.
    pub gone: u64,
    /// Refused for good.
    pub rejected: u64,
    /// Failed after retries, or interrupted by a crash.
    pub failed: u64,
}

#[derive(Debug)]
struct Post {
    agent: Agent,
    ttl: u32,
    at: f64,
    answer: Option<Answer>,
}

#[derive(Debug, Default)]
struct HubSend {
    expected: BTreeSet<Agent>,
    posted_at: f64,
    counts: Option<HubCounts>,
}

#[derive(Debug)]
struct Delivery {
    version: String,
    connection: u64,
    at: f64,
}

#[derive(Debug)]
struct Ack {
    version: String,
    at: f64,
    confirmed_at: Option<f64>,
}

#[derive(Debug, Default)]
struct Receipt {
    deliveries: Vec<Delivery>,
    acks: Vec<Ack>,
}

/// One broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// A short name for its kind.
    pub kind: &'static str,
    /// What exactly.
    pub detail: String,
}

/// The verdict and the figures of a run.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Broken promises: the run fails when there is any.
    pub violations: Vec<Violation>,
    /// Direct POSTs made.
    pub posted: u64,
    /// Answered 201.
    pub accepted: u64,
    /// Answered otherwise (mostly 503 while storage was restarting).
    pub refused: u64,
    /// Never answered (a node killed under the request).
    pub unanswered: u64,
    /// Accepted, delivered once and acked.
    pub delivered: u64,
    /// Accepted and not delivered within their TTL: expired, as promised.
    pub expired: u64,
    /// Delivered although not answered 201 (stored before the answer was lost or refused).
    pub delivered_unaccepted: u64,
    /// The same message again after a reconnect, never acked before: allowed.
    pub redelivered_unacked: u64,
    /// Again after an ack that was sent but not confirmed before the connection died: allowed.
    pub redelivered_unconfirmed_ack: u64,
    /// Again after an ack handled while storage was down (kept by design): allowed.
    pub redelivered_outage_ack: u64,
    /// Hub sends made, finished, and recipients reached.
    pub hub_sends: u64,
    /// Hub sends whose status said done.
    pub hub_done: u64,
    /// Hub recipients that received their message.
    pub hub_received: u64,
    /// Hub recipients counted accepted by the hub.
    pub hub_accepted: u64,
    /// Hub recipients counted failed (interrupted by a crash, or out of retries).
    pub hub_failed: u64,
    /// POST to first delivery, ms, for messages posted during a fault (or its recovery).
    pub latency_faults: Vec<f64>,
    /// The same for messages posted while nothing was broken.
    pub latency_calm: Vec<f64>,
}

/// The books.
#[derive(Debug, Default)]
pub struct Ledger {
    posts: HashMap<u64, Post>,
    hub: BTreeMap<u64, HubSend>,
    receipts: HashMap<(Agent, Key), Receipt>,
    outages: Vec<(f64, f64)>,
    faults: Vec<(f64, f64)>,
    violations: Vec<Violation>,
}

impl Ledger {
    /// Direct POST `n` to `agent`'s subscription, with `ttl`, made at `at`.
    pub fn posted(&mut self, n: u64, agent: Agent, ttl: u32, at: f64) {
        self.posts.insert(n, Post { agent, ttl, at, answer: None });
    }

    /// How POST `n` was answered.
    pub fn answered(&mut self, n: u64, answer: Answer) {
        if let Some(post) = self.posts.get_mut(&n) {
            post.answer = Some(answer);
        }
    }

    /// Hub send `n` (the run's number) is for `expected`, posted at `at`.
    pub fn hub_posted(&mut self, n: u64, expected: BTreeSet<Agent>, at: f64) {
        self.hub.insert(n, HubSend { expected, posted_at: at, counts: None });
    }

    /// Hub send `n` is done, with these counts.
    pub fn hub_done(&mut self, n: u64, counts: HubCounts) {
        if let Some(send) = self.hub.get_mut(&n) {
            send.counts = Some(counts);
        }
    }

    /// `agent` received `key` as push message `version` on its `connection`-th connection.
    pub fn delivered(&mut self, agent: Agent, key: Key, version: &str, connection: u64, at: f64) {
        let receipt = self.receipts.entry((agent, key)).or_default();
        receipt.deliveries.push(Delivery { version: version.to_owned(), connection, at });
    }

    /// `agent` sent the ack of `version` (of `key`).
    pub fn acked(&mut self, agent: Agent, key: Key, version: &str, at: f64) {
        let receipt = self.receipts.entry((agent, key)).or_default();
        receipt.acks.push(Ack { version: version.to_owned(), at, confirmed_at: None });
    }

    /// A ping sent after the ack of `version` was answered: the service handled the ack.
    pub fn confirmed(&mut self, agent: Agent, key: Key, version: &str, at: f64) {
        if let Some(receipt) = self.receipts.get_mut(&(agent, key))
            && let Some(ack) =
                receipt.acks.iter_mut().rev().find(|a| a.version == version && a.confirmed_at.is_none())
        {
            ack.confirmed_at = Some(at);
        }
    }

    /// Storage (Redis) was down from `from` to `to`: acks handled then may not have stuck.
    pub fn outage(&mut self, from: f64, to: f64) {
        self.outages.push((from, to));
    }

    /// A fault was in effect (or its recovery under way) from `from` to `to`.
    pub fn fault(&mut self, from: f64, to: f64) {
        self.faults.push((from, to));
    }

    /// Something the run saw that breaks a promise outright (a user agent forgotten, ...).
    pub fn violation(&mut self, kind: &'static str, detail: String) {
        self.violations.push(Violation { kind, detail });
    }

    /// Judges the books at `end` (seconds since the start).
    pub fn check(&self, end: f64) -> Verdict {
        let mut verdict = Verdict { violations: self.violations.clone(), ..Verdict::default() };
        for (n, post) in &self.posts {
            self.check_post(*n, post, end, &mut verdict);
        }
        for (&(agent, key), receipt) in &self.receipts {
            self.check_receipt(agent, key, receipt, &mut verdict);
        }
        for (n, send) in &self.hub {
            self.check_hub(*n, send, &mut verdict);
        }
        verdict.violations.sort_by(|a, b| (a.kind, &a.detail).cmp(&(b.kind, &b.detail)));
        verdict
    }

    fn check_post(&self, n: u64, post: &Post, end: f64, verdict: &mut Verdict) {
        verdict.posted += 1;
        let receipt = self.receipts.get(&(post.agent, Key::Direct(n)));
        let first = receipt.and_then(|r| r.deliveries.iter().map(|d| d.at).reduce(f64::min));
        match post.answer {
            Some(Answer::Accepted(at)) => {
                verdict.accepted += 1;
                match first {
                    Some(first) => {
                        verdict.delivered += 1;
                        let ms = (first - post.at).max(0.0) * 1e3;
                        if self.in_fault(post.at) {
                            verdict.latency_faults.push(ms);
                        } else {
                            verdict.latency_calm.push(ms);
                        }
                    }
                    // Given up by the service once the TTL ran out: accounted for.
                    None if end >= at + f64::from(post.ttl) => verdict.expired += 1,
                    None => verdict.violations.push(Violation {
                        kind: "lost",
                        detail: format!(
                            "direct {n} to agent {} answered 201 at {at:.1} s (TTL {} s) was never delivered",
                            post.agent, post.ttl
                        ),
                    }),
                }
            }
            Some(Answer::Refused(_)) | Some(Answer::Unanswered) | None => {
                if matches!(post.answer, Some(Answer::Refused(_))) {
                    verdict.refused += 1;
                } else {
                    verdict.unanswered += 1;
                }
                if first.is_some() {
                    verdict.delivered_unaccepted += 1;
                }
            }
        }
    }

    fn check_receipt(&self, agent: Agent, key: Key, receipt: &Receipt, verdict: &mut Verdict) {
        let mut violation = |kind, detail| verdict.violations.push(Violation { kind, detail });
        match key {
            Key::Direct(n) => match self.posts.get(&n) {
                Some(post) if post.agent == agent => {}
                Some(post) => violation(
                    "misdelivered",
                    format!("direct {n} for agent {} was delivered to agent {agent}", post.agent),
                ),
                None => violation("unknown", format!("agent {agent} received direct {n}, never posted")),
            },
            Key::Hub(n) => match self.hub.get(&n) {
                Some(send) if send.expected.contains(&agent) => {}
                Some(_) => {
                    violation("misdelivered", format!("hub send {n} reached agent {agent}, not a recipient"))
                }
                None => {}
            },
        }
        let versions: BTreeSet<&str> = receipt.deliveries.iter().map(|d| d.version.as_str()).collect();
        if versions.len() > 1 {
            let what = match key {
                Key::Direct(n) => format!("direct {n}"),
                Key::Hub(n) => format!("hub send {n}"),
            };
            violation(
                "sent twice",
                format!("agent {agent} received {what} as {} push messages", versions.len()),
            );
        }
        let mut seen: Vec<&Delivery> = Vec::new();
        for delivery in &receipt.deliveries {
            if seen.iter().all(|d| d.version != delivery.version) {
                seen.push(delivery);
                continue;
            }
            if seen.iter().any(|d| d.version == delivery.version && d.connection == delivery.connection) {
                violation(
                    "duplicate",
                    format!(
                        "agent {agent} received {key:?} twice on one connection ({})",
                        delivery.connection
                    ),
                );
                continue;
            }
            let acks: Vec<&Ack> =
                receipt.acks.iter().filter(|a| a.version == delivery.version && a.at < delivery.at).collect();
            let confirmed = acks.iter().filter(|a| a.confirmed_at.is_some_and(|c| c <= delivery.at));
            // The service handled the ack somewhere between its sending and the ping's
            // answer: if storage was down at any moment of that, the delete may have failed.
            let unexplained: Vec<&&Ack> =
                confirmed.filter(|a| !self.in_outage(a.at, a.confirmed_at.unwrap_or(a.at))).collect();
            if let Some(ack) = unexplained.first() {
                violation(
                    "delivered after ack",
                    format!(
                        "agent {agent} received {key:?} at {:.1} s after its ack at {:.1} s was confirmed",
                        delivery.at, ack.at
                    ),
                );
            } else if acks.iter().any(|a| a.confirmed_at.is_some()) {
                verdict.redelivered_outage_ack += 1;
            } else if !acks.is_empty() {
                verdict.redelivered_unconfirmed_ack += 1;
            } else {
                verdict.redelivered_unacked += 1;
            }
        }
        if !receipt.deliveries.is_empty() && receipt.acks.is_empty() {
            violation("never acked", format!("agent {agent} received {key:?} and never acked it"));
        }
    }

    fn check_hub(&self, n: u64, send: &HubSend, verdict: &mut Verdict) {
        verdict.hub_sends += 1;
        let received =
            send.expected.iter().filter(|a| self.receipts.contains_key(&(**a, Key::Hub(n)))).count();
        let received = received as u64;
        verdict.hub_received += received;
        let mut violation = |kind, detail| verdict.violations.push(Violation { kind, detail });
        let Some(c) = send.counts else {
            violation(
                "hub send unfinished",
                format!("hub send {n} (posted at {:.1} s) never finished", send.posted_at),
            );
            return;
        };
        if c.queued != send.expected.len() as u64 {
            violation(
                "hub counts",
                format!("hub send {n}: queued {} for {} recipients", c.queued, send.expected.len()),
            );
        }
        if c.accepted + c.gone + c.rejected + c.failed != c.queued {
            violation("hub counts", format!("hub send {n}: counts {c:?} do not add up"));
        }
        if received < c.accepted {
            violation("hub lost", format!("hub send {n}: {received} received, {} accepted", c.accepted));
        }
        if received > c.accepted + c.failed {
            violation(
                "hub counts",
                format!("hub send {n}: {received} received, more than accepted + failed ({c:?})"),
            );
        }
        verdict.hub_done += 1;
        verdict.hub_accepted += c.accepted;
        verdict.hub_failed += c.failed;
    }

    /// Whether storage was down at any moment from `from` to `to`.
    fn in_outage(&self, from: f64, to: f64) -> bool {
        self.outages.iter().any(|(down, up)| *down <= to && from <= *up)
    }

    fn in_fault(&self, at: f64) -> bool {
        self.faults.iter().any(|(from, to)| (*from..=*to).contains(&at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(verdict: &Verdict) -> Vec<&'static str> {
        verdict.violations.iter().map(|v| v.kind).collect()
    }

    fn deliver_and_ack(ledger: &mut Ledger, agent: Agent, key: Key, version: &str, connection: u64, at: f64) {
        ledger.delivered(agent, key, version, connection, at);
        ledger.acked(agent, key, version, at);
    }

    #[test]
    fn keys_round_trip_through_payloads() {
        for key in [Key::Direct(0), Key::Direct(u64::MAX), Key::Hub(7)] {
            assert_eq!(Key::parse(key.payload().as_bytes()), Some(key));
        }
        for junk in [&b"x:1"[..], b"d:", b"d:-1", b"hello", b"\xff"] {
            assert_eq!(Key::parse(junk), None);
        }
    }

    #[test]
    fn accepted_and_delivered_once_is_clean() {
        let mut ledger = Ledger::default();
        ledger.posted(1, 3, 60, 1.0);
        ledger.answered(1, Answer::Accepted(1.1));
        deliver_and_ack(&mut ledger, 3, Key::Direct(1), "v1", 0, 1.5);
        let verdict = ledger.check(100.0);
        assert!(verdict.violations.is_empty(), "{:?}", verdict.violations);
        assert_eq!((verdict.accepted, verdict.delivered), (1, 1));
        assert_eq!(verdict.latency_calm, vec![500.0]);
    }

    #[test]
    fn an_undelivered_message_is_lost_until_its_ttl_runs_out() {
        let mut ledger = Ledger::default();
        ledger.posted(1, 0, 60, 10.0);
        ledger.answered(1, Answer::Accepted(10.0));
        assert_eq!(kinds(&ledger.check(50.0)), ["lost"]);
        let verdict = ledger.check(70.0);
        assert!(verdict.violations.is_empty());
        assert_eq!(verdict.expired, 1);
    }

    #[test]
    fn unaccepted_messages_may_or_may_not_arrive() {
        let mut ledger = Ledger::default();
        ledger.posted(1, 0, 60, 1.0);
        ledger.answered(1, Answer::Refused(503));
        ledger.posted(2, 0, 60, 1.0);
        ledger.answered(2, Answer::Unanswered);
        deliver_and_ack(&mut ledger, 0, Key::Direct(2), "v", 0, 2.0);
        let verdict = ledger.check(10.0);
        assert!(verdict.violations.is_empty());
        assert_eq!((verdict.refused, verdict.unanswered, verdict.delivered_unaccepted), (1, 1, 1));
    }

    #[test]
    fn redeliveries_are_judged_by_what_the_service_knew() {
        let mut ledger = Ledger::default();
        for n in 1..=3 {
            ledger.posted(n, 0, 600, 0.0);
            ledger.answered(n, Answer::Accepted(0.1));
        }
        // Never acked, comes again on the next connection: allowed.
        ledger.delivered(0, Key::Direct(1), "a", 0, 1.0);
        deliver_and_ack(&mut ledger, 0, Key::Direct(1), "a", 1, 5.0);
        // Acked, the connection died before a ping confirmed it: allowed.
        deliver_and_ack(&mut ledger, 0, Key::Direct(2), "b", 0, 1.0);
        deliver_and_ack(&mut ledger, 0, Key::Direct(2), "b", 1, 5.0);
        // Acked and confirmed while storage was down: kept by design.
        ledger.outage(0.5, 3.0);
        deliver_and_ack(&mut ledger, 0, Key::Direct(3), "c", 0, 1.0);
        ledger.confirmed(0, Key::Direct(3), "c", 1.5);
        deliver_and_ack(&mut ledger, 0, Key::Direct(3), "c", 1, 5.0);
        // Sent just before storage went down, handled (and confirmed) after: the same.
        ledger.posted(5, 0, 600, 0.0);
        ledger.answered(5, Answer::Accepted(0.1));
        deliver_and_ack(&mut ledger, 0, Key::Direct(5), "e", 0, 0.4);
        ledger.confirmed(0, Key::Direct(5), "e", 0.6);
        deliver_and_ack(&mut ledger, 0, Key::Direct(5), "e", 1, 5.0);
        let verdict = ledger.check(10.0);
        assert!(verdict.violations.is_empty(), "{:?}", verdict.violations);
        assert_eq!(
            (
                verdict.redelivered_unacked,
                verdict.redelivered_unconfirmed_ack,
                verdict.redelivered_outage_ack
            ),
            (1, 1, 2)
        );
        // Acked and confirmed with storage up, then delivered again: a violation.
        ledger.posted(4, 0, 600, 0.0);
        ledger.answered(4, Answer::Accepted(0.1));
        deliver_and_ack(&mut ledger, 0, Key::Direct(4), "d", 1, 4.0);
        ledger.confirmed(0, Key::Direct(4), "d", 4.5);
        ledger.delivered(0, Key::Direct(4), "d", 2, 6.0);
        assert_eq!(kinds(&ledger.check(10.0)), ["delivered after ack"]);
    }

    #[test]
    fn copies_and_strays_are_violations() {
        let mut ledger = Ledger::default();
        ledger.posted(1, 0, 600, 0.0);
        ledger.answered(1, Answer::Accepted(0.1));
        deliver_and_ack(&mut ledger, 0, Key::Direct(1), "a", 0, 1.0);
        deliver_and_ack(&mut ledger, 0, Key::Direct(1), "b", 0, 2.0);
        deliver_and_ack(&mut ledger, 1, Key::Direct(1), "c", 0, 2.0);
        deliver_and_ack(&mut ledger, 0, Key::Direct(9), "e", 0, 2.0);
        ledger.delivered(2, Key::Direct(1), "f", 0, 2.0);
        let mut found = kinds(&ledger.check(10.0));
        found.sort_unstable();
        assert_eq!(found, ["misdelivered", "misdelivered", "never acked", "sent twice", "unknown"]);
        let mut ledger = Ledger::default();
        ledger.posted(1, 0, 600, 0.0);
        ledger.answered(1, Answer::Accepted(0.1));
        ledger.delivered(0, Key::Direct(1), "a", 0, 1.0);
        deliver_and_ack(&mut ledger, 0, Key::Direct(1), "a", 0, 1.5);
        assert_eq!(kinds(&ledger.check(10.0)), ["duplicate"]);
    }

    #[test]
    fn hub_sends_must_add_up() {
        let mut ledger = Ledger::default();
        let counts = HubCounts { queued: 3, accepted: 2, failed: 1, ..HubCounts::default() };
        ledger.hub_posted(1, BTreeSet::from([1, 2, 3]), 0.0);
        ledger.hub_done(1, counts);
        deliver_and_ack(&mut ledger, 1, Key::Hub(1), "a", 0, 1.0);
        deliver_and_ack(&mut ledger, 2, Key::Hub(1), "b", 0, 1.0);
        let verdict = ledger.check(10.0);
        assert!(verdict.violations.is_empty(), "{:?}", verdict.violations);
        assert_eq!((verdict.hub_received, verdict.hub_accepted, verdict.hub_failed), (2, 2, 1));
        // A recipient counted accepted that never received it.
        ledger.hub_posted(2, BTreeSet::from([1, 2]), 0.0);
        ledger.hub_done(2, HubCounts { queued: 2, accepted: 2, ..HubCounts::default() });
        deliver_and_ack(&mut ledger, 1, Key::Hub(2), "c", 0, 1.0);
        // Counts that do not add up, a stranger, a second copy, an unfinished send.
        ledger.hub_posted(3, BTreeSet::from([1]), 0.0);
        ledger.hub_done(3, HubCounts { queued: 2, accepted: 1, ..HubCounts::default() });
        deliver_and_ack(&mut ledger, 1, Key::Hub(3), "d", 0, 1.0);
        deliver_and_ack(&mut ledger, 1, Key::Hub(3), "e", 1, 2.0);
        deliver_and_ack(&mut ledger, 4, Key::Hub(3), "f", 0, 1.0);
        ledger.hub_posted(4, BTreeSet::from([1]), 0.0);
        let mut found = kinds(&ledger.check(10.0));
        found.sort_unstable();
        assert_eq!(
            found,
            ["hub counts", "hub counts", "hub lost", "hub send unfinished", "misdelivered", "sent twice"]
        );
    }

    #[test]
    fn latency_is_split_by_faults() {
        let mut ledger = Ledger::default();
        ledger.fault(10.0, 20.0);
        for (n, at) in [(1, 5.0), (2, 15.0)] {
            ledger.posted(n, 0, 60, at);
            ledger.answered(n, Answer::Accepted(at));
            deliver_and_ack(&mut ledger, 0, Key::Direct(n), "v", 0, at + 0.25);
        }
        let verdict = ledger.check(30.0);
        assert_eq!((verdict.latency_calm, verdict.latency_faults), (vec![250.0], vec![250.0]));
    }
}
