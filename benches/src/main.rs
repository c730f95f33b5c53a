//! `xmacvlan-bench`: the benchmark harness (see the library). `xmacvlan bench ARGS` runs it with
//! `XMACVLAN_BIN` naming itself; run directly, it takes the `xmacvlan` binary from its own directory
//! unless `--xmacvlan-bin` or `XMACVLAN_BIN` names another.
fn main() -> std::process::ExitCode {
    let sibling = std::env::current_exe().ok().map(|p| p.with_file_name("xmacvlan")).filter(|p| p.exists());
    std::process::ExitCode::from(xmacvlan_bench::main_with(std::env::args_os().collect(), sibling))
}
