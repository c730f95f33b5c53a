//! `xmacvlan-cni`: the CNI plugin binary (see `xmacvlan_ctl::cni`).

fn main() {
    std::process::exit(xmacvlan_ctl::cni::main());
}
