//! A worker: one thread pinned to one core, owning queue `w` of every interface of every network.
//!
//! Per network it keeps a [`Domain`] (domain.rs): the sockets of the parent and of the endpoints,
//! the frame pools of their UMEMs, and a plane that decides. A round:
//! 1. reap the parent's TX completions (only the parent transmits through AF_XDP);
//! 2. receive a batch from every socket on the **active list** — sockets that epoll reported
//!    readable and that have not been drained since — decide, stage; top up their fill rings;
//! 3. the flood socket, when readable;
//! 4. flush: the parent's TX ring (one kick), and every frame for any endpoint in one `sendmmsg`.
//!
//! The cost of a round does not depend on how many endpoints exist, only on how many have
//! something to do: readiness comes from one `epoll_wait` per round (edge-triggered: the kernel
//! queues a socket when new frames land in its RX ring), not from scanning every ring. Nothing in
//! a round allocates, locks, or makes a syscall per frame. When idle for a while the worker sleeps
//! in `epoll_wait`, woken by traffic or by the eventfd the control plane rings.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::counters::WorkerCounters;
use crate::domain::{token, Domain, Port, FLOOD_PORT};
use crate::fwd::{PortId, PortInfo};
use crate::txbatch::PacketTx;
use crate::xsk::Area;
use crate::NetId;

/// Empty rounds spun before sleeping. Short: when the worker shares its core with the parent's
/// NAPI thread (2-core machines), every round it spins is a round NAPI cannot fill the ring.
const SPIN_ROUNDS: u32 = 64;
/// Sleep while idle; short while transmitted frames still await completion (completions do not
/// wake epoll), so frames lent to the TX ring never stall.
const SLEEP_MS: i32 = 100;
const SLEEP_TX_PENDING_MS: i32 = 1;
/// The eventfd's epoll token (sockets' tokens: domain.rs).
const WAKE_TOKEN: u64 = u64::MAX;
/// How often kernel counters are read and fill reserves adjusted.
const EPOCH: Duration = Duration::from_millis(500);

/// A message from the control plane; each is acknowledged once applied.
pub(crate) enum Command {
    AddDomain(Box<Domain>),
    /// Stop serving a network; its sockets come back in [`Reply::Domain`] for the control plane
    /// to close.
    RemoveDomain(NetId),
    /// `pool`: a UMEM this worker has no pool for yet (a new endpoint group).
    AddPort {
        net: NetId,
        id: PortId,
        info: PortInfo,
        /// Its addresses, for the IP guard.
        addrs: Arc<[IpAddr]>,
        port: Box<Port>,
        pool: Option<(u16, Arc<Area>)>,
    },
    /// Stop serving a port; its sockets come back in [`Reply::Port`]. Its frames stay lent to the
    /// kernel until [`Command::Reclaim`], sent once those sockets are closed.
    RemovePort {
        net: NetId,
        id: PortId,
    },
    /// The port's sockets are closed: take its frames back; `drop_umem` when it was the UMEM's
    /// last user on this worker.
    Reclaim {
        net: NetId,
        id: PortId,
        umem: u16,
        drop_umem: bool,
    },
    SetUp {
        net: NetId,
        id: PortId,
        up: bool,
    },
    SetSources {
        net: NetId,
        id: PortId,
        macs: Vec<crate::frame::MacAddr>,
    },
    Stop,
}

/// What a command hands back. Sockets come back to the control plane's thread, which closes them
/// (closing waits for an RCU grace period: not in the worker's loop).
pub(crate) enum Reply {
    Done,
    #[allow(dead_code)] // held only to be dropped there
    Port(Box<Port>),
    #[allow(dead_code)] // held only to be dropped there
    Domain(Box<Domain>),
}

pub(crate) type Ack = SyncSender<Result<Reply, String>>;

pub(crate) struct Worker {
    pub id: usize,
    pub cpu: Option<usize>,
    pub counters: Arc<CachePadded<WorkerCounters>>,
    pub commands: Receiver<(Command, Ack)>,
    pub pending: Arc<AtomicUsize>,
    pub wake: Arc<OwnedFd>,
    /// Scheduling niceness of the worker thread (see [`crate::Config::nice`]).
    pub nice: i32,
    domains: Vec<Domain>,
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
    tx: PacketTx,
}

impl Worker {
    pub fn new(
        id: usize,
        cpu: Option<usize>,
        counters: Arc<CachePadded<WorkerCounters>>,
        commands: Receiver<(Command, Ack)>,
        pending: Arc<AtomicUsize>,
        wake: Arc<OwnedFd>,
        nice: i32,
    ) -> Result<Self, crate::Error> {
        // SAFETY: plain epoll_create1; checked below and owned.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(crate::Error::Sys { call: "epoll_create1", cause: std::io::Error::last_os_error() });
        }
        // SAFETY: a fresh fd we own.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        let tx = PacketTx::open().map_err(|cause| crate::Error::Sys { call: "packet socket for transmit", cause })?;
        let w = Worker {
            id,
            cpu,
            counters,
            commands,
            pending,
            wake,
            nice,
            domains: Vec::new(),
            epoll,
            // SAFETY: epoll_event is plain data.
            events: vec![unsafe { std::mem::zeroed() }; 256],
            tx,
        };
        w.watch(w.wake.as_raw_fd(), WAKE_TOKEN)
            .map_err(|cause| crate::Error::Sys { call: "epoll_ctl (eventfd)", cause })?;
        Ok(w)
    }

    fn watch(&self, fd: RawFd, token: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLET) as u32, u64: token };
        // SAFETY: registers a live fd with our epoll instance; `ev` is a valid epoll_event.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn unwatch(&self, fd: RawFd) {
        // SAFETY: deregisters an fd (still open: the caller holds it); errors mean not registered.
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    fn watch_domain(&self, d: &Domain) -> Result<(), String> {
        for (fd, t) in d.fds() {
            self.watch(fd, t).map_err(|e| format!("epoll_ctl: {e}"))?;
        }
        Ok(())
    }

    pub fn run(mut self) {
        if let Some(cpu) = self.cpu {
            core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
        }
        if self.nice != 0 {
            // SAFETY: setpriority on this thread's own id (Linux: PRIO_PROCESS with a tid is per
            // thread); failure only leaves the default priority.
            unsafe {
                let tid = libc::gettid();
                if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, self.nice) != 0 {
                    eprintln!(
                        "xmv-worker-{}: setpriority({}) failed: {}",
                        self.id,
                        self.nice,
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
        let mut idle = 0u32;
        let mut last_epoch = Instant::now();
        loop {
            if self.pending.load(Ordering::Acquire) > 0 && !self.apply_commands() {
                return;
            }
            self.harvest(0);
            let mut work = 0;
            for d in &mut self.domains {
                work += d.poll(&self.counters, &mut self.tx);
            }
            if work > 0 {
                self.counters.busy_loops.add(1);
                idle = 0;
                if self.counters.busy_loops.get() & 0x3ff == 0 {
                    self.maybe_refresh(&mut last_epoch);
                }
                continue;
            }
            idle += 1;
            if idle < SPIN_ROUNDS {
                std::hint::spin_loop();
                continue;
            }
            idle = 0;
            self.maybe_refresh(&mut last_epoch);
            self.counters.idle_sleeps.add(1);
            let pending = self.domains.iter().any(|d| d.parent_tx_out > 0 || !d.short.is_empty());
            self.harvest(if pending { SLEEP_TX_PENDING_MS } else { SLEEP_MS });
        }
    }

    /// Waits up to `timeout_ms` for readiness and puts every readable socket on its domain's
    /// active list.
    fn harvest(&mut self, timeout_ms: i32) {
        // SAFETY: `events` is a live, writable array of the length given.
        let n = unsafe {
            libc::epoll_wait(self.epoll.as_raw_fd(), self.events.as_mut_ptr(), self.events.len() as i32, timeout_ms)
        };
        for k in 0..n.max(0) as usize {
            let t = self.events[k].u64;
            if t == WAKE_TOKEN {
                self.drain_wake();
                continue;
            }
            let (net, port, sock) = ((t >> 32) as NetId, (t >> 16) & 0xffff, (t & 0xffff) as usize);
            let Some(d) = self.domains.iter_mut().find(|d| d.net == net) else { continue };
            if port == FLOOD_PORT {
                d.flood_active = true;
            } else {
                d.activate(port as PortId, sock);
            }
        }
    }

    fn maybe_refresh(&mut self, last: &mut Instant) {
        if last.elapsed() >= EPOCH {
            *last = Instant::now();
            for d in &mut self.domains {
                d.refresh(&self.counters);
            }
        }
    }

    fn drain_wake(&self) {
        let mut buf = 0u64;
        // SAFETY: reads 8 bytes into a u64 from a non-blocking eventfd.
        unsafe { libc::read(self.wake.as_raw_fd(), (&mut buf as *mut u64).cast(), 8) };
    }

    /// Applies queued commands; false when told to stop.
    fn apply_commands(&mut self) -> bool {
        while let Ok((cmd, ack)) = self.commands.try_recv() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            let result = match cmd {
                Command::Stop => {
                    let _ = ack.send(Ok(Reply::Done));
                    return false;
                }
                Command::AddDomain(d) => match self.watch_domain(&d) {
                    Ok(()) => {
                        d.publish();
                        self.domains.push(*d);
                        Ok(Reply::Done)
                    }
                    Err(e) => {
                        for (fd, _) in d.fds() {
                            self.unwatch(fd);
                        }
                        Err(e)
                    }
                },
                Command::RemoveDomain(net) => match self.domains.iter().position(|d| d.net == net) {
                    Some(i) => {
                        let d = self.domains.swap_remove(i);
                        for (fd, _) in d.fds() {
                            self.unwatch(fd);
                        }
                        Ok(Reply::Domain(Box::new(d)))
                    }
                    None => Ok(Reply::Done),
                },
                Command::AddPort { net, id, info, addrs, port, pool } => {
                    let tokens: Vec<(RawFd, u64)> =
                        port.socks.iter().enumerate().map(|(s, k)| (k.xsk.raw_fd(), token(net, id, s))).collect();
                    match self.domains.iter_mut().find(|d| d.net == net) {
                        Some(d) => match d.add_port(id, info, addrs, *port, pool) {
                            Ok(()) => {
                                let watched = tokens.iter().try_for_each(|&(fd, t)| self.watch(fd, t));
                                match watched {
                                    Ok(()) => Ok(Reply::Done),
                                    Err(e) => {
                                        for &(fd, _) in &tokens {
                                            self.unwatch(fd);
                                        }
                                        // Hand the sockets back; the control plane undoes the rest.
                                        let d = self.domains.iter_mut().find(|d| d.net == net).expect("just used");
                                        let _ = d.remove_port(id);
                                        Err(format!("epoll_ctl: {e}"))
                                    }
                                }
                            }
                            Err(e) => Err(e),
                        },
                        None => Err(format!("worker {} has no network {net}", self.id)),
                    }
                }
                Command::RemovePort { net, id } => {
                    let port = self.domains.iter_mut().find(|d| d.net == net).and_then(|d| d.remove_port(id));
                    match port {
                        Some(p) => {
                            for sock in &p.socks {
                                self.unwatch(sock.xsk.raw_fd());
                            }
                            Ok(Reply::Port(Box::new(p)))
                        }
                        None => Ok(Reply::Done),
                    }
                }
                Command::Reclaim { net, id, umem, drop_umem } => {
                    if let Some(d) = self.domains.iter_mut().find(|d| d.net == net) {
                        d.reclaim(id, umem, drop_umem);
                    }
                    Ok(Reply::Done)
                }
                Command::SetUp { net, id, up } => {
                    if let Some(d) = self.domains.iter_mut().find(|d| d.net == net) {
                        d.plane.table.set_up(id, up);
                    }
                    Ok(Reply::Done)
                }
                Command::SetSources { net, id, macs } => match self.domains.iter_mut().find(|d| d.net == net) {
                    Some(d) => d.plane.table.set_sources(id, &macs).map(|_| Reply::Done).map_err(|e| e.to_string()),
                    None => Err(format!("worker {} has no network {net}", self.id)),
                },
            };
            let _ = ack.send(result);
        }
        true
    }
}
