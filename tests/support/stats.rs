//! The books of `xmacvlan stats --format json` ([`xmacvlan_lab::books`]: the accounting invariant and
//! the UMEM census, shared with the bench's soak), read from a test's daemon until they hold.

use std::time::{Duration, Instant};

pub use xmacvlan_lab::books::{accounting, umem, Accounting, Umem};

use super::Lab;

/// How often the polling checks read the stats.
const POLL: Duration = Duration::from_millis(50);

impl Lab {
    /// Reads stats until the accounting invariant holds, up to `limit` (a snapshot taken while a
    /// frame is between a worker's receive and transmit counters is off by that frame). `Err`: a
    /// field the contract requires is missing (at once), or the last sums after `limit`.
    pub fn wait_accounting(&self, limit: Duration) -> Result<Accounting, String> {
        let start = Instant::now();
        loop {
            let a = accounting(&self.stats())?;
            if a.holds() {
                return Ok(a);
            }
            if start.elapsed() >= limit {
                return Err(format!("the accounting invariant does not hold (read for {limit:?}): {a}"));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Lab {
    /// Reads stats until network `network`'s UMEM identity holds and `done` accepts the counts, up
    /// to `limit` (the workers publish these counts periodically). `Err`: a field is missing (at
    /// once), or the last counts after `limit`.
    pub fn wait_umem(&self, network: &str, limit: Duration, done: impl Fn(&Umem) -> bool) -> Result<Umem, String> {
        let start = Instant::now();
        loop {
            let u = umem(&self.stats(), network)?;
            if u.balanced() && done(&u) {
                return Ok(u);
            }
            if start.elapsed() >= limit {
                return Err(format!("after {limit:?}: {u}"));
            }
            std::thread::sleep(POLL);
        }
    }
}
