//! The soak's checks, as pure functions of what was read (so each can be shown to fail): the books,
//! flatness of a figure over the run, and the UMEM at rest.

use serde::Serialize;
use xmacvlan_lab::books::{Accounting, Umem};

/// One named check, its verdict and the figures it was judged on.
#[derive(Serialize, Debug, Clone)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Check {
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
        Check { name: name.into(), ok, detail: detail.into() }
    }
}

/// The accounting invariant, read at rest: every frame that entered (received at a port, present
/// or departed, or made by a flood) left (delivered, dropped under a reason, or a flood to
/// nobody). `when` says at which point of the run the books were read.
pub fn books(when: &str, a: &Result<Accounting, String>) -> Check {
    let name = format!("0 frames unaccounted ({when})");
    match a {
        Ok(a) => {
            let off = a.inflow() as i128 - a.outflow() as i128;
            let detail = if a.holds() { format!("{a}") } else { format!("{off:+} frames unaccounted: {a}") };
            Check::new(name, a.holds(), detail)
        }
        Err(e) => Check::new(name, false, e.clone()),
    }
}

/// A figure over the run: where it started and ended, its range, and its spread after the warm-up.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct Flat {
    pub start: u64,
    pub end: u64,
    pub min: u64,
    pub max: u64,
    /// The first sample at or after the warm-up, and when it was taken (s into the run).
    pub reference: u64,
    pub reference_t: f64,
    /// Samples at or after the warm-up, and their extremes.
    pub judged: usize,
    pub judged_min: u64,
    pub judged_max: u64,
    /// The largest deviation of a judged sample from the reference, percent of the reference.
    pub spread_pct: f64,
}

/// Flatness of `samples` (seconds into the run, value): the first sample at or after `warmup` is
/// the reference; every sample from it on must lie within ±`tol_pct` % of it. What grows during
/// the warm-up (first connects, allocator arenas, page cache of the binary) is not judged; what
/// grows after it — a leak per frame, per connect or per stats request — shows as a drift. At
/// least two samples must be judged, else the run was too short to say.
pub fn flat(name: &str, unit: &str, samples: &[(f64, u64)], warmup: f64, tol_pct: f64) -> (Check, Flat) {
    let name = format!("{name} flat (±{tol_pct} % after {warmup:.0} s)");
    let Some(&(_, start)) = samples.first() else {
        return (Check::new(name, false, "no samples"), Flat::default());
    };
    let end = samples.last().map_or(start, |s| s.1);
    let all = samples.iter().map(|s| s.1);
    let mut f = Flat {
        start,
        end,
        min: all.clone().min().unwrap_or(start),
        max: all.max().unwrap_or(start),
        ..Flat::default()
    };
    let judged: Vec<(f64, u64)> = samples.iter().copied().filter(|&(t, _)| t >= warmup).collect();
    let Some(&(rt, r)) = judged.first() else {
        return (Check::new(name, false, format!("no sample after the {warmup:.0} s warm-up: run longer")), f);
    };
    f.reference = r;
    f.reference_t = rt;
    f.judged = judged.len();
    f.judged_min = judged.iter().map(|s| s.1).min().unwrap_or(r);
    f.judged_max = judged.iter().map(|s| s.1).max().unwrap_or(r);
    let dev = |v: u64| {
        if r == 0 {
            if v == 0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            100.0 * (v as f64 - r as f64).abs() / r as f64
        }
    };
    f.spread_pct = dev(f.judged_min).max(dev(f.judged_max));
    let ok = f.judged >= 2 && f.spread_pct <= tol_pct;
    let why = if f.judged < 2 { " — only one sample after the warm-up: run longer" } else { "" };
    let detail = format!(
        "reference {r} {unit} at {rt:.0} s; {} samples after it within {}..{} {unit} (spread {:.2} %); whole run: \
         start {start}, end {end}, min {}, max {}{why}",
        f.judged, f.judged_min, f.judged_max, f.spread_pct, f.min, f.max
    );
    (Check::new(name, ok, detail), f)
}

/// The UMEM at rest with endpoints connected: every frame somewhere (the census balances) and
/// none held by a worker (`in_flight` 0: nothing is being forwarded, so a held frame is lost).
pub fn umem_at_rest(u: &Umem) -> Result<(), String> {
    if !u.balanced() {
        return Err(format!("the census does not balance: {u}"));
    }
    if u.in_flight != 0 {
        return Err(format!("{} frames still held by the workers at rest: {u}", u.in_flight));
    }
    Ok(())
}

/// The UMEM once every endpoint has departed: at rest, and no frame lent to an endpoint (each
/// departed port's fill and RX rings were taken back).
pub fn umem_without_endpoints(u: &Umem) -> Result<(), String> {
    umem_at_rest(u)?;
    if u.endpoints != 0 {
        return Err(format!("{} frames still lent to endpoints that are gone: {u}", u.endpoints));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[(f64, u64)]) -> Vec<(f64, u64)> {
        v.to_vec()
    }

    #[test]
    fn flat_judges_after_the_warmup_only() {
        // Growth during the warm-up is not judged; 100 → 104 after it is within 5 %.
        let (c, f) = flat("RSS", "kB", &s(&[(0.0, 50), (10.0, 90), (20.0, 100), (30.0, 104), (40.0, 97)]), 15.0, 5.0);
        assert!(c.ok, "{c:?}");
        assert_eq!((f.reference, f.judged, f.start, f.end, f.min, f.max), (100, 3, 50, 97, 50, 104));
        assert_eq!(f.spread_pct, 4.0);
    }

    #[test]
    fn flat_fails_on_drift_and_on_too_few_samples() {
        let (c, f) = flat("fds", "", &s(&[(0.0, 40), (20.0, 40), (30.0, 41), (40.0, 43)]), 15.0, 5.0);
        assert!(!c.ok && f.spread_pct > 7.0, "{c:?}");
        let (c, _) = flat("fds", "", &s(&[(0.0, 40), (20.0, 40)]), 15.0, 5.0);
        assert!(!c.ok && c.detail.contains("run longer"), "{c:?}");
        let (c, _) = flat("fds", "", &s(&[(0.0, 40), (10.0, 40)]), 15.0, 5.0);
        assert!(!c.ok && c.detail.contains("no sample after"), "{c:?}");
        assert!(!flat("fds", "", &[], 15.0, 5.0).0.ok);
        // Shrinking counts as much as growing.
        assert!(!flat("fds", "", &s(&[(20.0, 40), (30.0, 30)]), 15.0, 5.0).0.ok);
    }

    #[test]
    fn umem_rules() {
        let rest = Umem { frames: 10, free: 6, flood: 1, parent: 2, endpoints: 1, in_flight: 0, ..Umem::default() };
        assert!(umem_at_rest(&rest).is_ok());
        assert!(umem_without_endpoints(&rest).unwrap_err().contains("lent to endpoints"));
        let empty = Umem { free: 7, endpoints: 0, ..rest };
        assert!(umem_without_endpoints(&empty).is_ok());
        let held = Umem { free: 5, in_flight: 1, ..rest };
        assert!(umem_at_rest(&held).unwrap_err().contains("held by the workers"));
        let lost = Umem { free: 5, ..rest };
        assert!(umem_at_rest(&lost).unwrap_err().contains("does not balance"));
    }

    #[test]
    fn books_name_the_gap() {
        let a = Accounting { rx: 10, tx: 9, ..Accounting::default() };
        let c = books("end", &Ok(a));
        assert!(!c.ok && c.detail.starts_with("+1 frames unaccounted"), "{c:?}");
        let a = Accounting { rx: 10, tx: 9, departed_drops: 1, ..Accounting::default() };
        assert!(books("end", &Ok(a)).ok);
        assert!(!books("end", &Err("stats JSON lacks x".into())).ok);
    }
}
