//! The ring side of the simulator tests.

use tcmud_core::ring::{CmdRequest, Entry, Ring};

/// Every command the ring holds, fetched (a task management request there
/// fails the test).
pub fn fetch_cmds(ring: &mut Ring) -> Vec<CmdRequest> {
    ring.fetch()
        .map(|e| match e.unwrap() {
            Entry::Cmd(c) => c,
            Entry::Tmr(t) => panic!("unexpected tmr {t:?}"),
        })
        .collect()
}
