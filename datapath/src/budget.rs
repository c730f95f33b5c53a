//! How many UMEM frames each socket may leave in the kernel's hands: pure arithmetic, unit-tested.
//!
//! A frame in a fill ring is pinned memory the kernel may write a received frame into. Copy-mode
//! AF_XDP cannot take frames back from a fill ring: only receiving does. So frames parked with
//! idle endpoints are lost to everyone else, and a pool whose fill rings ate it starves the rest —
//! floods, new endpoints, the parent (the failure this module exists to prevent).
//!
//! The rules:
//! - Endpoints of a parent are served in **groups** of [`GROUP_SIZE`] per worker; each group has a
//!   UMEM of its own, sized [`group_frames`]: memory grows with the endpoint count, and a group
//!   exists only while it has members.
//! - Every endpoint is guaranteed a **floor** of [`FLOOR`] frames (what a container sends back to
//!   back — a TCP initial window, a burst of neighbour discovery — while a sleeping worker wakes
//!   up): a group's floors — those of its vacant places too — are never lent to anyone else, so
//!   the members that came first cannot grow into the floors of those that come later.
//! - A new endpoint starts with [`INITIAL`] frames, taken from the group's spare frames (those
//!   beyond every member's floor): containers are chatty when they come up. An endpoint that sends
//!   **grows** its reserve (doubling, up to [`ENDPOINT_CAP`]) from the spare frames; one that stays
//!   idle shrinks back towards its floor (halving per epoch) as its frames come back.
//! - The parent's sockets use the parent's UMEM: deep fill rings ([`PARENT_FILL`]) but never the
//!   last [`PARENT_COPY_RESERVE`] frames, which carry endpoint frames towards the wire; the flood
//!   socket lands in a reserved area of that UMEM ([`FLOOD_FRAMES`]) that nothing else touches.

/// Endpoints per worker that share one UMEM. Not more: the kernel gives every socket of a UMEM a
/// buffer pool with a descriptor per frame of it (≈ 128 bytes each), so a bigger group costs every
/// member more kernel memory.
pub const GROUP_SIZE: u32 = 32;
/// Frames an endpoint's fill ring is always topped up to.
pub const FLOOR: u32 = 16;
/// The reserve a new endpoint starts with (as far as spare frames allow).
pub const INITIAL: u32 = 64;
/// Frames per group beyond the floors, for endpoints that receive traffic.
pub const GROUP_GROWTH: u32 = 512;
/// The most frames one endpoint may hold.
pub const ENDPOINT_CAP: u32 = 512;
/// Fill level of each parent socket: deep, so the parent's NAPI can fill a whole scheduler slice
/// when it shares a core with the worker.
pub const PARENT_FILL: u32 = 6144;
/// Frames of the parent's UMEM its fill rings never take: copies of endpoint frames for the wire.
pub const PARENT_COPY_RESERVE: u32 = 512;
/// The flood socket's landing area in the parent's UMEM (two receive batches).
pub const FLOOD_FRAMES: u32 = 2 * crate::flood::BATCH as u32;

/// UMEM frames of one endpoint group.
pub const fn group_frames() -> u32 {
    GROUP_SIZE * FLOOR + GROUP_GROWTH
}

/// The chunk size for a parent MTU: 2 KiB when the largest frame (tag included) fits behind the
/// kernel's 256-byte headroom, else 4 KiB.
pub fn chunk_for_mtu(mtu: u32) -> u32 {
    if mtu + 18 + 256 <= 2048 {
        2048
    } else {
        4096
    }
}

/// Pinned UMEM bytes per endpoint and worker, averaged over a full group.
pub fn umem_bytes_per_endpoint(chunk: u32) -> u32 {
    group_frames() / GROUP_SIZE * chunk
}

/// The fill reserve of one endpoint socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    /// Frames the kernel should hold for this socket when it is topped up.
    pub target: u32,
    /// Frames that came back from the kernel (were received) during the current epoch.
    pub used: u32,
}

impl Default for Reserve {
    fn default() -> Self {
        Reserve { target: INITIAL, used: 0 }
    }
}

impl Reserve {
    /// Called before topping up, with what the kernel still held: a ring drained to a quarter or
    /// less since the last top-up means the reserve is too small for the traffic.
    pub fn on_refill(&mut self, held: u32) {
        if held <= self.target / 4 {
            self.target = (self.target * 2).min(ENDPOINT_CAP);
        }
    }

    /// Called once per epoch: a reserve whose frames mostly stayed unused halves, not below the floor.
    pub fn on_epoch(&mut self) {
        if self.used < self.target / 8 {
            self.target = (self.target / 2).max(FLOOR);
        }
        self.used = 0;
    }

    /// Frames to lend now to a socket holding `held`, from a pool with `free` frames of which
    /// `deficit` are owed to floors (members below theirs, this one included, and vacant places). Up to the floor the
    /// reserved frames are this socket's own; above it only spare frames may be lent.
    pub fn grant(&self, held: u32, free: u32, deficit: u32) -> u32 {
        if held >= self.target {
            return 0;
        }
        let want = self.target - held;
        let floor_part = FLOOR.saturating_sub(held).min(want);
        let spare = free.saturating_sub(deficit);
        (floor_part + spare.min(want - floor_part)).min(free)
    }
}

/// What the parent's sockets may take from their pool.
pub fn parent_grant(held: u32, target: u32, free: u32) -> u32 {
    target.saturating_sub(held).min(free.saturating_sub(PARENT_COPY_RESERVE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_holds_every_floor_and_its_growth() {
        assert_eq!(group_frames(), 32 * 16 + 512);
        assert_eq!(umem_bytes_per_endpoint(2048), 32 * 2048);
        assert_eq!(chunk_for_mtu(1500), 2048);
        assert_eq!(chunk_for_mtu(1774), 2048);
        assert_eq!(chunk_for_mtu(1775), 4096);
        assert_eq!(chunk_for_mtu(3000), 4096);
    }

    #[test]
    fn floors_are_granted_even_when_spare_frames_are_gone() {
        let r = Reserve::default();
        // Pool of 40 free frames, all owed to members below their floor (this one owes 16): the
        // new endpoint gets its floor, not its initial 64.
        assert_eq!(r.grant(0, 40, 40), FLOOR);
        assert_eq!(r.grant(0, 100, 16), 64, "spare frames: the initial reserve");
        let big = Reserve { target: 256, used: 0 };
        assert_eq!(big.grant(16, 40, 32), 8, "8 spare beyond the 32 owed");
        assert_eq!(big.grant(0, 3, 16), 3, "never more than is free");
    }

    #[test]
    fn reserve_grows_under_demand_up_to_the_cap_and_shrinks_when_idle() {
        let mut r = Reserve { target: FLOOR, used: 0 };
        r.on_refill(1); // drained to 1 of 16
        assert_eq!(r.target, 32);
        r.on_refill(24); // three quarters left: enough
        assert_eq!(r.target, 32);
        for _ in 0..10 {
            r.on_refill(0);
        }
        assert_eq!(r.target, ENDPOINT_CAP);
        r.used = ENDPOINT_CAP / 2;
        r.on_epoch();
        assert_eq!(r.target, ENDPOINT_CAP, "busy: kept");
        for _ in 0..20 {
            r.on_epoch();
        }
        assert_eq!(r.target, FLOOR, "idle: back to the floor, not below");
    }

    #[test]
    fn busy_endpoints_grow_into_the_spare_frames_and_no_further() {
        // 64 members at their floor, every one wants to grow: the pool's spare frames run out
        // before anyone takes another member's floor.
        let mut free = group_frames() - GROUP_SIZE * FLOOR;
        let mut lent = 0;
        let r = Reserve { target: ENDPOINT_CAP, used: 0 };
        for _ in 0..GROUP_SIZE {
            let g = r.grant(FLOOR, free, 0);
            assert!(g <= ENDPOINT_CAP - FLOOR);
            free -= g;
            lent += g;
        }
        assert_eq!(lent, GROUP_GROWTH);
        assert_eq!(free, 0);
    }

    #[test]
    fn the_parent_leaves_the_copy_reserve() {
        assert_eq!(parent_grant(0, PARENT_FILL, 10_000), PARENT_FILL);
        assert_eq!(parent_grant(0, PARENT_FILL, 4_000), 4_000 - PARENT_COPY_RESERVE);
        assert_eq!(parent_grant(0, PARENT_FILL, 100), 0);
        assert_eq!(parent_grant(6_000, PARENT_FILL, 10_000), 144);
    }
}
