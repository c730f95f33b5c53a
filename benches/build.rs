//! Compiles the bench's BPF programs into libbpf-rs skeletons in OUT_DIR: bpf/gen_tx.bpf.c (the
//! generator's XDP_TX program) and bpf/floor.bpf.c (the `tc-floor` backend).
use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SOURCES: [(&str, &str); 2] = [("bpf/gen_tx.bpf.c", "gen_tx.skel.rs"), ("bpf/floor.bpf.c", "floor.skel.rs")];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR must be set by cargo"));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => other,
    };
    for (src, skel) in SOURCES {
        SkeletonBuilder::new()
            .source(src)
            .clang_args([format!("-I/usr/include/{multiarch}"), "-Wall".to_string(), "-O2".to_string()])
            .build_and_generate(out_dir.join(skel))
            .unwrap_or_else(|e| panic!("building the BPF skeleton of {src} (needs clang and kernel headers): {e}"));
        println!("cargo:rerun-if-changed={src}");
    }
}
