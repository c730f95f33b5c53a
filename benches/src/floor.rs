//! The `tc-floor` backend's programs (bpf/floor.bpf.c): loaded once per setup, attached through tcx
//! links that this process holds. Dropping a [`Floor`] closes the links, which detaches every
//! program — and a bench that dies takes its links with it: nothing stays on the lab's interfaces.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/floor.skel.rs"));
}
use skel::{FloorSkel, FloorSkelBuilder};

/// Entries of the `ports` array: containers are found by the last two bytes of their MAC.
const PORTS: usize = 4096;

pub struct Floor {
    skel: FloorSkel<'static>,
    /// tcx links: the parent's, then one per endpoint.
    links: Vec<OwnedFd>,
}

impl Floor {
    /// Loads the programs for the parent `parent_ifindex` and attaches `floor_parent` to it, in the
    /// namespace at `ns`.
    pub fn new(ns: &Path, parent_ifindex: u32) -> Result<Floor> {
        // The OpenObject must outlive the skeleton: one small leak per setup.
        let open_object: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = FloorSkelBuilder::default().open(open_object).context("opening the tc-floor BPF object")?;
        let ro = open.maps.rodata_data.as_deref_mut().ok_or_else(|| anyhow!("tc-floor BPF object has no .rodata"))?;
        ro.parent_ifindex = parent_ifindex;
        let skel = open.load().context("loading the tc-floor programs")?;
        let mut floor = Floor { skel, links: Vec::new() };
        let fd = floor.skel.progs.floor_parent.as_fd().as_raw_fd();
        floor.links.push(tcx_link(ns, fd, parent_ifindex).context("attaching floor_parent to the parent")?);
        Ok(floor)
    }

    /// Serves the container with `mac` (lab numbering: its index in the last two bytes) whose veth's
    /// lab-side end is `ifindex`, in the namespace at `ns`.
    pub fn add(&mut self, ns: &Path, mac: [u8; 6], ifindex: u32) -> Result<()> {
        let idx = (usize::from(u16::from_be_bytes([mac[4], mac[5]])) % PORTS) as u32;
        // struct port: mac[6], pad u16, ifindex u32.
        let mut value = [0u8; 12];
        value[..6].copy_from_slice(&mac);
        value[8..].copy_from_slice(&ifindex.to_ne_bytes());
        self.skel
            .maps
            .ports
            .update(&idx.to_ne_bytes(), &value, MapFlags::ANY)
            .with_context(|| format!("tc-floor: writing port {idx}"))?;
        let fd = self.skel.progs.floor_endpoint.as_fd().as_raw_fd();
        self.links
            .push(tcx_link(ns, fd, ifindex).with_context(|| format!("attaching floor_endpoint to ifindex {ifindex}"))?);
        Ok(())
    }
}

/// A tcx ingress link of program `prog_fd` on `ifindex` of the namespace at `ns`.
fn tcx_link(ns: &Path, prog_fd: i32, ifindex: u32) -> Result<OwnedFd> {
    crate::napi::in_netns(ns, || {
        use libbpf_rs::libbpf_sys as sys;
        // SAFETY: plain libbpf call with a live program fd; no options.
        let fd = unsafe { sys::bpf_link_create(prog_fd, ifindex as i32, sys::BPF_TCX_INGRESS, std::ptr::null()) };
        if fd < 0 {
            return Err(anyhow!(
                "bpf_link_create(tcx ingress, ifindex {ifindex}): {}",
                std::io::Error::from_raw_os_error(-fd)
            ));
        }
        // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })
}
