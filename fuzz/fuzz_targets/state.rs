//! The daemon's state directory as a starting daemon reads it (`state::Store::load`): the state
//! file through `state::parse`, then the journal through `state::replay` (`journal::apply` for each
//! record). The input is the state file's text, a NUL byte, and the journal.
//!
//! Invariants: a state read back is saved and read again as the same state (the state file is
//! rewritten from it); replaying a journal either fails or leaves a state that does the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xmacvlan_ctl::state::{self, State};

fuzz_target!(|data: &[u8]| {
    let (file, journal) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(text) = std::str::from_utf8(file) else { return };
    let Ok(mut st) = state::parse(text) else { return };
    rewritten(&st);
    if let Some(journal) = journal {
        if state::replay(&mut st, journal).is_ok() {
            rewritten(&st);
        }
    }
});

/// The state file `Store::rewrite` makes of `st` reads back as `st`.
fn rewritten(st: &State) {
    let text = serde_json::to_string_pretty(st).expect("a state encodes");
    let back = state::parse(&text).unwrap_or_else(|e| panic!("the rewritten state file is refused ({e}):\n{text}"));
    assert_eq!(&back, st, "the state changed on its way through the file:\n{text}");
}
