//! Resource samples of the run's processes and their trend after warm-up, without I/O.
//!
//! A leak shows as a steady climb, not as a high value: the slope of a least-squares line
//! through the samples after warm-up, per minute. It is flagged when the line climbs by more
//! than a fifth of its mean over the span measured (and by more than a floor, so that a
//! handful of file descriptors on an idle process is not called a leak). A process restarted
//! by a fault starts a new series: only its last one counts, when it is long enough.

/// One sample of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the start of the run.
    pub at: f64,
    /// Resident memory, bytes.
    pub rss: f64,
    /// Open file descriptors.
    pub fds: f64,
    /// Bytes in its data directory.
    pub disk: f64,
}

/// The trend of one measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Mean over the span.
    pub mean: f64,
    /// Last value.
    pub last: f64,
    /// Change per minute.
    pub per_minute: f64,
    /// Whether it climbs (see the module docs).
    pub upward: bool,
}

/// Least-squares slope (per second) of `(x, y)` points; zero for fewer than two.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let (mx, my) = points.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (num, den) = points
        .iter()
        .fold((0.0, 0.0), |(num, den), (x, y)| (num + (x - mx) * (y - my), den + (x - mx) * (x - mx)));
    if den == 0.0 { 0.0 } else { num / den }
}

/// The trend of `values` (time, value) measured from `from` on, or `None` when fewer than
/// `min_span` seconds of them remain. `floor` is the climb below which nothing is flagged.
pub fn trend(values: &[(f64, f64)], from: f64, min_span: f64, floor: f64) -> Option<Trend> {
    let points: Vec<(f64, f64)> = values.iter().copied().filter(|(at, _)| *at >= from).collect();
    let span = points.last()?.0 - points.first()?.0;
    if span < min_span {
        return None;
    }
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let per_second = slope(&points);
    let climb = per_second * span;
    Some(Trend {
        mean,
        last: points.last()?.1,
        per_minute: per_second * 60.0,
        upward: climb > floor && climb > 0.2 * mean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line_and_of_noise() {
        let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 1.0)).collect();
        assert!((slope(&line) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 6.0)]), 0.0);
        let flat: Vec<(f64, f64)> =
            (0..100).map(|x| (x as f64, if x % 2 == 0 { 10.0 } else { 12.0 })).collect();
        assert!(slope(&flat).abs() < 0.01);
    }

    #[test]
    fn a_climb_is_flagged_and_a_plateau_is_not() {
        let leak: Vec<(f64, f64)> = (0..60).map(|s| (s as f64 * 10.0, 100e6 + s as f64 * 1e6)).collect();
        let t = trend(&leak, 0.0, 60.0, 1e6).unwrap();
        assert!(t.upward && (t.per_minute - 6e6).abs() < 1.0, "{t:?}");
        // Warm-up growth, then flat: measured after warm-up, nothing to flag.
        let plateau: Vec<(f64, f64)> =
            (0..60).map(|s| (s as f64 * 10.0, 100e6 + (s.min(10) as f64) * 5e6)).collect();
        assert!(!trend(&plateau, 100.0, 60.0, 1e6).unwrap().upward);
        // A few file descriptors more on a small count: under the floor.
        let fds: Vec<(f64, f64)> = (0..60).map(|s| (s as f64 * 10.0, 10.0 + (s / 20) as f64)).collect();
        assert!(!trend(&fds, 0.0, 60.0, 20.0).unwrap().upward);
        assert_eq!(trend(&fds, 580.0, 60.0, 20.0), None, "too short a span");
    }
}
