//! The faults of a soak run, as a pure function of the seed and the run's length, so that a
//! run that found something can be repeated fault for fault.
//!
//! The run has three parts: a warm-up with no faults (the baseline for the resource
//! slopes), the faults, spaced evenly with seeded jitter (every kind at least once, then
//! kinds drawn at random), and a calm tail in which everything recovers and the latency
//! "after recovery" is measured.

/// A small, fast, seeded generator (SplitMix64): the run's only source of randomness, so a
/// seed names a run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// `kill -9` of serve node `node`, restarted after `down` seconds.
    KillNode { node: usize, down: f64 },
    /// `kill -9` of the Redis primary (the replica stays), restarted after `down` seconds.
    RestartRedis { down: f64 },
    /// `kill -9` of the hub just after a send to everyone was queued, restarted after `down`.
    KillHub { down: f64 },
    /// This fraction of the user agents drop their connections and reconnect at once.
    Storm { fraction: f64 },
    /// This fraction of the user agents stop reading for `seconds`.
    StopReading { fraction: f64, seconds: f64 },
    /// A hostile client: malformed WebSocket frames, oversized and trickled POST bodies.
    Hostile,
}

impl Fault {
    /// A short name, for the report.
    pub fn name(&self) -> &'static str {
        match self {
            Self::KillNode { .. } => "kill -9 node",
            Self::RestartRedis { .. } => "restart redis",
            Self::KillHub { .. } => "kill -9 hub",
            Self::Storm { .. } => "reconnect storm",
            Self::StopReading { .. } => "stop reading",
            Self::Hostile => "hostile client",
        }
    }
}

/// The kinds of fault, to leave some out of a run (`--without`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    KillNode,
    RestartRedis,
    KillHub,
    Storm,
    StopReading,
    Hostile,
}

const KINDS: [Kind; 6] =
    [Kind::KillNode, Kind::RestartRedis, Kind::KillHub, Kind::Storm, Kind::StopReading, Kind::Hostile];

/// A fault and when it starts, in seconds from the start of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planned {
    /// When.
    pub at: f64,
    /// What.
    pub fault: Fault,
}

/// The phases of a run of `seconds`: (end of warm-up, start of the calm tail).
pub fn phases(seconds: f64) -> (f64, f64) {
    let warm_up = (seconds * 0.12).clamp(15.0, 180.0);
    let calm = (seconds * 0.2).clamp(25.0, 300.0);
    (warm_up, (seconds - calm).max(warm_up))
}

/// The faults of a run of `seconds` with `nodes` serve nodes, for `seed`, of every kind but
/// those `without`.
pub fn schedule(seed: u64, seconds: f64, nodes: usize, without: &[Kind]) -> Vec<Planned> {
    let mut rng = Rng::new(seed);
    let (start, end) = phases(seconds);
    let allowed: Vec<Kind> = KINDS.into_iter().filter(|kind| !without.contains(kind)).collect();
    if allowed.is_empty() {
        return Vec::new();
    }
    // About one fault a minute on a long run, one every ~12 s on a short one.
    let count = (((end - start) / 50.0).round() as usize).max(allowed.len());
    let gap = (end - start) / count as f64;
    let mut kinds = allowed.clone();
    // Seeded shuffle, so every kind comes once before any comes twice.
    for i in (1..kinds.len()).rev() {
        kinds.swap(i, rng.below(i as u64 + 1) as usize);
    }
    while kinds.len() < count {
        kinds.push(allowed[rng.below(allowed.len() as u64) as usize]);
    }
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| {
            let at = start + gap * (i as f64 + 0.2 + 0.6 * rng.unit());
            let fault = match kind {
                Kind::KillNode => {
                    Fault::KillNode { node: rng.below(nodes as u64) as usize, down: 1.0 + 4.0 * rng.unit() }
                }
                Kind::RestartRedis => Fault::RestartRedis { down: 1.0 + 3.0 * rng.unit() },
                Kind::KillHub => Fault::KillHub { down: 1.0 + 3.0 * rng.unit() },
                Kind::Storm => Fault::Storm { fraction: 0.5 + 0.5 * rng.unit() },
                Kind::StopReading => {
                    Fault::StopReading { fraction: 0.05 + 0.1 * rng.unit(), seconds: 5.0 + 15.0 * rng.unit() }
                }
                Kind::Hostile => Fault::Hostile,
            };
            Planned { at, fault }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_names_one_schedule() {
        assert_eq!(schedule(7, 1800.0, 3, &[]), schedule(7, 1800.0, 3, &[]));
        assert_ne!(schedule(7, 1800.0, 3, &[]), schedule(8, 1800.0, 3, &[]));
    }

    #[test]
    fn faults_stay_between_warm_up_and_calm_every_kind_at_least_once() {
        for (seed, seconds) in [(1, 120.0), (2, 1800.0), (3, 60.0), (4, 7200.0)] {
            let plan = schedule(seed, seconds, 3, &[]);
            let (start, end) = phases(seconds);
            assert!(plan.windows(2).all(|w| w[0].at < w[1].at), "in order");
            assert!(plan.iter().all(|p| (start..end).contains(&p.at)), "{plan:?}");
            let mut names: Vec<&str> = plan.iter().map(|p| p.fault.name()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), 6, "{seed}: {names:?}");
            assert!(plan.iter().all(|p| match p.fault {
                Fault::KillNode { node, .. } => node < 3,
                _ => true,
            }));
        }
        assert!(schedule(2, 1800.0, 3, &[]).len() >= 25);
    }

    #[test]
    fn kinds_left_out_never_come() {
        let plan = schedule(5, 120.0, 3, &[Kind::RestartRedis, Kind::Hostile]);
        assert!(plan.len() >= 4);
        assert!(plan.iter().all(|p| !matches!(p.fault, Fault::RestartRedis { .. } | Fault::Hostile)));
        assert!(schedule(5, 120.0, 3, &KINDS).is_empty());
    }

    #[test]
    fn the_generator_is_uniform_enough() {
        let mut rng = Rng::new(1);
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            buckets[(rng.unit() * 10.0) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| (800..1200).contains(&b)), "{buckets:?}");
    }
}
