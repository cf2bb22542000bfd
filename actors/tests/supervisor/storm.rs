//! Storms of add/remove/reconfig events (owned, foreign, malformed) against a model.

use crate::util::supervisor::*;
use actix::Actor;
use std::collections::BTreeSet;
use tcmud::supervisor::{FakeSource, ListDevices, RawEvent, Supervisor};
use tcmud_core::netlink::{NlCmd, Reconfig};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

fn name(minor: u32) -> String {
    match minor % 3 {
        0 => format!("tcm-user/1/d{minor}/thin/default/v{minor}"),
        1 => format!("tcm-user/1/d{minor}/file//img/{minor}"),
        _ => format!("tcm-user/3/d{minor}/glfs/vol@host/img{minor}"), // foreign
    }
}

async fn storm(seed: u64, events: usize) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), true);
    let (f, log) = factory();
    let (fake, src) = FakeSource::new();
    let (mut sup, sig) = Supervisor::new(cfg.clone(), f, src);
    // The model has no periodic rescan (it would serve the sysfs devices below).
    sup.set_rescan_interval(std::time::Duration::from_secs(3600));
    let addr = sup.start();
    sig.ready.await.unwrap();
    // The kernel's devices, as sysfs shows them after start-up (events are checked
    // against these names).
    for minor in 0..12 {
        set_uio_name(&cfg, minor, &name(minor));
    }

    let mut rng = Rng(seed);
    let mut served = BTreeSet::new();
    let mut want_replies = Vec::new();
    let mut want_stops = 0;
    for i in 0..events {
        let minor = u32::try_from(rng.below(12)).expect("below 12");
        let owned = minor % 3 != 2;
        let id = 1000 + minor;
        let n = name(minor);
        let payload = match rng.below(7) {
            0 | 1 => {
                if owned {
                    served.insert(minor);
                    want_replies.push((4, 0, id));
                }
                event(NlCmd::Added, &n, minor, id, None)
            }
            2 | 3 => {
                if owned {
                    if served.remove(&minor) {
                        want_stops += 1;
                    }
                    want_replies.push((5, 0, id));
                }
                event(NlCmd::Removed, &n, minor, id, None)
            }
            4 => {
                if owned {
                    let st = if served.contains(&minor) {
                        0
                    } else {
                        -libc::ENODEV
                    };
                    want_replies.push((6, st, id));
                }
                let r = if rng.below(2) == 0 {
                    Reconfig::DevSize(rng.below(1 << 40))
                } else {
                    Reconfig::WriteCache(rng.below(2) == 1)
                };
                event(NlCmd::Reconfig, &n, minor, id, Some(r))
            }
            5 => {
                // Truncated valid message: malformed, dropped.
                let mut p = event(NlCmd::Added, &n, minor, id, None);
                p.truncate(4 + (i % 20));
                if p.len() <= 4 {
                    p.push(0xff);
                }
                p
            }
            _ => {
                // Random bytes after a valid genl header.
                let mut p = vec![u8::try_from(rng.below(4)).expect("below 4"), 2, 0, 0];
                p.extend((0..rng.below(24)).map(|_| rng.byte()));
                p
            }
        };
        addr.send(RawEvent(payload)).await.unwrap();
    }
    let now = addr.send(ListDevices).await.unwrap();
    assert_eq!(
        now,
        served.iter().copied().collect::<Vec<_>>(),
        "seed {seed}"
    );
    let replies: Vec<_> = fake.sent().iter().map(|p| decode_reply(p)).collect();
    assert_eq!(replies, want_replies, "seed {seed}");
    let stops = log
        .borrow()
        .iter()
        .filter(|o| matches!(o, Op::Stop(_)))
        .count();
    assert_eq!(stops, want_stops, "seed {seed}");
}

#[actix::test]
async fn storms_match_the_model() {
    for seed in [1, 0x9e37_79b9_7f4a_7c15, 42, 7777] {
        storm(seed, 400).await;
    }
}
