//! Compiles bpf/xmacvlan.bpf.c into a libbpf-rs skeleton in OUT_DIR.
use std::{env, path::PathBuf};

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "../bpf/xmacvlan.bpf.c";
const HDR: &str = "../bpf/xmacvlan.h";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo")).join("xmacvlan.skel.rs");
    SkeletonBuilder::new()
        .source(SRC)
        // Debian's clang finds asm/types.h only through the multiarch include directory.
        .clang_args(["-I/usr/include/x86_64-linux-gnu", "-I../bpf", "-O2", "-Wall"])
        .build_and_generate(&out)
        .expect("compiling bpf/xmacvlan.bpf.c (needs clang and libbpf-dev; `make deps` installs them)");
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed={HDR}");
}
