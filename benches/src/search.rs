//! RFC 2544 throughput: the highest offered rate at which a trial loses no frame, found by binary
//! search. Pure bookkeeping; the caller runs the trials.

/// The search state: `pass` is the highest rate that lost nothing so far, `fail` the lowest that
/// lost frames.
#[derive(Debug, Clone)]
pub struct Search {
    pass: f64,
    fail: Option<f64>,
    start: f64,
    /// Stop once (fail - pass) / fail is at most this.
    resolution: f64,
    steps_left: u32,
}

impl Search {
    /// A search whose first trial offers `start` (pps), e.g. the measured overload rate.
    pub fn new(start: f64, resolution: f64, max_steps: u32) -> Search {
        Search { pass: 0.0, fail: None, start, resolution, steps_left: max_steps }
    }

    /// The next rate to try, or None when done.
    pub fn next(&self) -> Option<f64> {
        if self.steps_left == 0 {
            return None;
        }
        match self.fail {
            None if self.pass == 0.0 => Some(self.start),
            // The start rate passed: that is the answer (we do not offer more than we can send).
            None => None,
            Some(f) if (f - self.pass) / f <= self.resolution => None,
            Some(f) => Some((self.pass + f) / 2.0),
        }
    }

    pub fn record(&mut self, rate: f64, lost_nothing: bool) {
        self.steps_left = self.steps_left.saturating_sub(1);
        if lost_nothing {
            self.pass = self.pass.max(rate);
        } else {
            self.fail = Some(self.fail.map_or(rate, |f| f.min(rate)));
        }
    }

    /// The throughput found: the highest rate without loss (0 if every trial lost frames).
    pub fn throughput(&self) -> f64 {
        self.pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(threshold: f64, start: f64) -> (f64, u32) {
        let mut s = Search::new(start, 0.01, 20);
        let mut trials = 0;
        while let Some(r) = s.next() {
            trials += 1;
            s.record(r, r <= threshold);
        }
        (s.throughput(), trials)
    }

    #[test]
    fn converges_to_the_loss_threshold_from_below() {
        let (t, n) = run(1.234e6, 5e6);
        assert!(t <= 1.234e6 && t > 1.234e6 * 0.98, "{t}");
        assert!(n <= 10, "{n} trials");
    }

    #[test]
    fn start_rate_without_loss_is_the_answer() {
        assert_eq!(run(9e6, 5e6), (5e6, 1));
    }

    #[test]
    fn nothing_passes() {
        let mut s = Search::new(1e6, 0.01, 6);
        while let Some(r) = s.next() {
            s.record(r, false);
        }
        assert_eq!(s.throughput(), 0.0);
    }
}
