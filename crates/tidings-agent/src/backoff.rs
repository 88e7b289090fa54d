//! Reconnection delays: exponential, capped, with jitter so that many user agents losing
//! the same service do not all come back in the same instant.

use std::time::Duration;

/// The first delay.
pub const INITIAL: Duration = Duration::from_millis(500);
/// The longest delay.
pub const MAX: Duration = Duration::from_secs(60);

/// The delay sequence of one connection.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The delay before the next attempt; `random` in `[0, 1)` picks where in the upper half
    /// of the current window it falls.
    pub fn next(&mut self, random: f64) -> Duration {
        let window = INITIAL.saturating_mul(1 << self.attempt.min(16)).min(MAX);
        self.attempt = self.attempt.saturating_add(1);
        window.mul_f64(0.5 + random.clamp(0.0, 1.0) / 2.0)
    }

    /// Back to the first delay, after a connection succeeded.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A random number in `[0, 1)` from the system's source.
pub fn random() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_jitters_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.next(0.0), Duration::from_millis(250));
        assert_eq!(b.next(1.0), Duration::from_millis(1000));
        for _ in 0..20 {
            assert!(b.next(1.0) <= MAX);
        }
        assert_eq!(b.next(0.0), MAX / 2);
        b.reset();
        assert_eq!(b.next(0.5), Duration::from_millis(375));
        let r = random();
        assert!((0.0..1.0).contains(&r));
    }
}
