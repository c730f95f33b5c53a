//! Compiles bpf/gen_tx.bpf.c (the generator's XDP_TX program) into a libbpf-rs skeleton in OUT_DIR.
use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "bpf/gen_tx.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR must be set by cargo")).join("gen_tx.skel.rs");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => other,
    };
    SkeletonBuilder::new()
        .source(SRC)
        .clang_args([format!("-I/usr/include/{multiarch}"), "-Wall".to_string(), "-O2".to_string()])
        .build_and_generate(&out)
        .expect("building the generator BPF skeleton (needs clang and kernel headers)");
    println!("cargo:rerun-if-changed={SRC}");
}
