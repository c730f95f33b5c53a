//! `xmacvlan-bench`: the same harness as `xmacvlan bench` (see the library), as its own binary.
fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(xmacvlan_bench::main_with(std::env::args_os().collect(), None))
}
