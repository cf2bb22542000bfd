//! Implicit ALUA with two (and three) daemons exporting one RBD image
//! (docs/alua.md): device actors, each over its own cluster connection (as
//! tcmud processes would be), each driven by a kernel simulator of its own
//! against the test cluster (tests/ceph/cluster.sh). The image's exclusive lock decides which
//! port group is active/optimized; a write through the other port moves
//! the lock, and the states follow; a dead owner's lock is broken by the
//! next write. Built with the `rbd` feature only.

use crate::util::{rerun, test_name};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::device::sim_spec;
use crate::util::device::workload::{clear_unit_attention, one};
use crate::util::rbd::*;
use tcmud::device::{spawn_device_with, DeviceOptions, RestartBudget};
use tcmud_core::scsi::{AluaConfig, AluaPeer};
use tcmud_core::sim::{KernelSim, SimCompletion, SimConfig, SimDir};

const BYTES: u64 = 8 << 20;
/// How long a state change may take: a dead owner's lock is broken only
/// after its watch expired (the cluster's `osd client watch timeout`).
const DEADLINE: Duration = Duration::from_secs(120);

/// Daemon `group` of `n` (groups and relative ports 1..=n): its own group
/// and relative port, the others its peers.
fn alua(group: u16, n: u16) -> AluaConfig {
    AluaConfig {
        group,
        relative_port: group,
        peers: (1..=n)
            .filter(|&g| g != group)
            .map(|g| AluaPeer {
                group: g,
                relative_port: g,
            })
            .collect(),
        transition_secs: 30,
        non_owner: tcmud_core::scsi::NonOwner::ActiveNonOptimized,
        preferred: None,
    }
}

/// Runs `workload` (the initiator, on a thread of its own) against two
/// devices serving image `name`: port group 1 then port group 2.
fn two_daemons<R: Send + 'static>(
    name: &str,
    workload: impl FnOnce(&mut KernelSim, &mut KernelSim) -> R + Send + 'static,
) -> R {
    daemons(name, 2, "", move |sims| match sims {
        [a, b] => workload(a, b),
        _ => unreachable!("two simulators"),
    })
}

/// Runs `workload` (the initiator, on a thread of its own) against `n`
/// devices serving image `name` (dev_config options `extra`), each over its
/// own cluster connection (as `n` tcmud processes would be): port group
/// i + 1 at `sims[i]`.
fn daemons<R: Send + 'static>(
    name: &str,
    n: u16,
    extra: &str,
    workload: impl FnOnce(&mut [KernelSim]) -> R + Send + 'static,
) -> R {
    let (name, extra) = (name.to_owned(), extra.to_owned());
    actix::System::new().block_on(async move {
        let (dev_tx, dev_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let (mut sims, devs): (Vec<_>, Vec<_>) = (0..n)
                .map(|_| KernelSim::new(SimConfig::default()).unwrap())
                .unzip();
            dev_tx.send(devs).unwrap();
            let _ = done_tx.send(workload(&mut sims));
        });
        let devs = dev_rx.recv().unwrap();
        let mut handles = Vec::new();
        for (group, dev) in (1..=n).zip(devs) {
            let opts = DeviceOptions {
                tick: Duration::from_millis(10),
                alua: Some(alua(group, n)),
                ..DeviceOptions::simulated(dev)
            };
            let spec = sim_spec(&format!("alua-{group}"), RestartBudget::default());
            handles.push(spawn_device_with(spec, open(&name, &extra, BYTES), opts).unwrap());
        }
        let r = done_rx.await.expect("initiator thread panicked");
        for h in handles {
            assert_eq!(h.failure(), None);
            h.stop().await;
        }
        r
    })
}

/// REPORT TARGET PORT GROUPS through `sim`: (group, state) of each
/// descriptor, own group first; unit attentions on the way are skipped.
fn rtpg(sim: &mut KernelSim) -> Vec<(u16, u8)> {
    let mut cdb = [0u8; 12];
    cdb[0] = 0xA3; // MAINTENANCE IN
    cdb[1] = 0x0A; // REPORT TARGET PORT GROUPS
    cdb[6..10].copy_from_slice(&512u32.to_be_bytes()); // ALLOCATION LENGTH
    for _ in 0..5 {
        let c = one(sim, &cdb, SimDir::In(512));
        if c.status == 0 {
            let len = u32::from_be_bytes(c.data_in[..4].try_into().unwrap()) as usize;
            return c.data_in[4..4 + len]
                .chunks(12)
                .map(|d| (u16::from_be_bytes([d[2], d[3]]), d[0] & 0x0F))
                .collect();
        }
        assert_eq!(
            sense(&c.sense).0,
            6,
            "only unit attentions: {:?}",
            sense(&c.sense)
        );
    }
    panic!("REPORT TARGET PORT GROUPS never GOOD");
}

/// Polls `sim`'s RTPG until it reports `want` (a condition wait with a
/// deadline); returns how long it took.
fn wait_states(sim: &mut KernelSim, want: &[(u16, u8)]) -> Duration {
    wait_until(sim, &format!("{want:?}"), |got| got == want)
}

/// Polls `sim`'s RTPG until `ok` holds (`what`, for the failure); returns
/// how long it took.
fn wait_until(sim: &mut KernelSim, what: &str, ok: impl Fn(&[(u16, u8)]) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let got = rtpg(sim);
        if ok(&got) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "states stuck at {got:?}, want {what}"
        );
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
}

const AO: u8 = 0;
const ANO: u8 = 1;
const UNAVAILABLE: u8 = 3;

fn pattern(seed: u8, blocks: usize) -> Vec<u8> {
    (0..blocks * 512)
        .map(|i| i.to_le_bytes()[0].wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// [`one`] allowed up to [`DEADLINE`]: a write waiting for a dead
/// owner's lock to be broken takes the cluster's watch timeout.
fn one_slow(sim: &mut KernelSim, cdb: &[u8], dir: SimDir) -> SimCompletion {
    sim.submit(cdb, dir).unwrap();
    sim.kick().unwrap();
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < DEADLINE, "no completion");
        let _ = sim.wait_kick(Duration::from_millis(20)).unwrap();
        if let Some(c) = sim.process_completions().unwrap().pop() {
            return c;
        }
    }
}

/// Writes `data` at `lba` through `sim`, skipping unit attentions.
fn write(sim: &mut KernelSim, lba: u64, data: &[u8]) {
    let blocks = u32::try_from(data.len() / 512).expect("a test write's length");
    for _ in 0..5 {
        let c = one_slow(
            sim,
            &write16(lba, blocks, false),
            SimDir::Out(data.to_vec()),
        );
        if c.status == 0 {
            return;
        }
        assert_eq!(sense(&c.sense).0, 6, "write failed: {:?}", sense(&c.sense));
    }
    panic!("WRITE never GOOD");
}

/// SET TARGET PORT GROUPS through `sim` with (state, group) descriptors,
/// skipping unit attentions.
fn stpg(sim: &mut KernelSim, descs: &[(u8, u16)]) -> SimCompletion {
    let mut list = vec![0u8; 4];
    for &(state, group) in descs {
        let [h, l] = group.to_be_bytes();
        list.extend_from_slice(&[state, 0, h, l]);
    }
    let mut cdb = [0u8; 12];
    cdb[0] = 0xA4; // MAINTENANCE OUT
    cdb[1] = 0x0A; // SET TARGET PORT GROUPS
    let len = u32::try_from(list.len()).expect("a short list");
    cdb[6..10].copy_from_slice(&len.to_be_bytes()); // PARAMETER LIST LENGTH
    for _ in 0..5 {
        let c = one_slow(sim, &cdb, SimDir::Out(list.clone()));
        if c.status != 2 || sense(&c.sense).0 != 6 {
            return c;
        }
    }
    panic!("SET TARGET PORT GROUPS kept getting unit attentions");
}

/// VPD 83h through `sim`: the designators as (PIV|association|type, body).
fn vpd83(sim: &mut KernelSim) -> Vec<(u8, Vec<u8>)> {
    let c = one(sim, &[0x12, 0x01, 0x83, 0x02, 0x00, 0], SimDir::In(512));
    assert_eq!(c.status, 0);
    let len = u16::from_be_bytes([c.data_in[2], c.data_in[3]]) as usize;
    let mut d = &c.data_in[4..4 + len];
    let mut out = Vec::new();
    while d.len() >= 4 {
        let n = usize::from(d[3]);
        out.push((d[1], d[4..4 + n].to_vec()));
        d = &d[4 + n..];
    }
    out
}

#[test]
fn lock_owner_is_active_optimized_and_the_states_follow_writes() {
    let _cluster = cluster();
    let name = create_image("alua-move", BYTES);
    let image = name.clone();
    two_daemons(&name, move |a, b| {
        clear_unit_attention(a);
        clear_unit_attention(b);
        // One logical unit (same NAA), two ports: relative port and group
        // designators of each daemon's own.
        let (va, vb) = (vpd83(a), vpd83(b));
        assert_eq!(va[0], vb[0], "the NAA designator");
        assert_eq!(va[0].0, 0x03);
        assert_eq!(
            va[2..],
            [(0x14, vec![0, 0, 0, 1]), (0x15, vec![0, 0, 0, 1])]
        );
        assert_eq!(
            vb[2..],
            [(0x14, vec![0, 0, 0, 2]), (0x15, vec![0, 0, 0, 2])]
        );
        // INQUIRY: TPGS 11b (implicit and explicit ALUA).
        let inq = one(a, &[0x12, 0, 0, 0, 96, 0], SimDir::In(96));
        assert_eq!(inq.data_in[5] & 0x30, 0x30);
        // Nobody holds the lock: no group is optimized.
        assert_eq!(rtpg(a), [(1, ANO), (2, ANO)]);
        // A write through daemon 1 takes the lock: its group is optimized,
        // seen from both ports.
        let one_data = pattern(1, 16);
        write(a, 0, &one_data);
        wait_states(a, &[(1, AO), (2, ANO)]);
        wait_states(b, &[(2, ANO), (1, AO)]);
        // A write through daemon 2 moves the lock (librbd asks daemon 1 to
        // release it): the states follow on both ports.
        let two_data = pattern(2, 16);
        write(b, 16, &two_data);
        wait_states(b, &[(2, AO), (1, ANO)]);
        wait_states(a, &[(1, ANO), (2, AO)]);
        // SET TARGET PORT GROUPS through daemon 1 naming its group
        // optimized moves the lock back without a write from the initiator:
        // GOOD once daemon 1 holds it, its RTPG at once, daemon 2's after
        // its next look at the lock.
        let c = stpg(a, &[(AO, 1), (ANO, 2)]);
        assert_eq!((c.status, sense(&c.sense)), (0, (0, 0, 0)));
        assert_eq!(rtpg(a), [(1, AO), (2, ANO)]);
        wait_states(b, &[(2, ANO), (1, AO)]);
        // The peer's group optimized, asked of daemon 1: only a write
        // through daemon 2 moves the lock there (HARDWARE ERROR, SET
        // TARGET PORT GROUPS COMMAND FAILED); nothing changes.
        let c = stpg(a, &[(AO, 2)]);
        assert_eq!((c.status, sense(&c.sense)), (2, (4, 0x67, 0x0A)));
        assert_eq!(rtpg(a), [(1, AO), (2, ANO)]);
        // Both writes are on the image, read through either port: the
        // lock's move for SET TARGET PORT GROUPS changed no data.
        for sim in [&mut *a, &mut *b] {
            let c = one(sim, &read16(0, 32), SimDir::In(32 * 512));
            assert_eq!(c.status, 0);
            assert_eq!(&c.data_in[..16 * 512], &one_data[..]);
            assert_eq!(&c.data_in[16 * 512..], &two_data[..]);
        }
        assert_eq!(read_back(&image, 0, 16 * 512), one_data);
    });
}

/// RTPG as each of `sims` (port group i + 1) should report it when group
/// `owner` holds the lock (`None`: no group known to): own group first,
/// then the peers in order.
fn expected(n: u16, me: u16, owner: Option<u16>) -> Vec<(u16, u8)> {
    let st = |g| if Some(g) == owner { AO } else { ANO };
    std::iter::once(me)
        .chain((1..=n).filter(|&g| g != me))
        .map(|g| (g, st(g)))
        .collect()
}

#[test]
fn with_three_daemons_every_port_names_the_owners_group() {
    let _cluster = cluster();
    let name = create_image("alua-three", BYTES);
    let image = name.clone();
    daemons(&name, 3, "", move |sims| {
        let image = image;
        let all = |sims: &mut [KernelSim], owner: Option<u16>| {
            for (i, sim) in sims.iter_mut().enumerate() {
                let me = u16::try_from(i + 1).expect("three");
                wait_states(sim, &expected(3, me, owner));
            }
        };
        for sim in sims.iter_mut() {
            clear_unit_attention(sim);
        }
        all(sims, None);
        // A write through daemon 2 takes the lock; it publishes its group,
        // so daemons 1 and 3 tell which of their two peers owns the unit.
        write(&mut sims[1], 0, &pattern(2, 16));
        all(sims, Some(2));
        // The lock moves to daemon 3 on its write.
        write(&mut sims[2], 16, &pattern(3, 16));
        all(sims, Some(3));
        // A client that publishes nothing takes the lock (a tool outside
        // the daemons): daemon 3's record names a client that no longer
        // owns the lock, so no port names a group optimized.
        let tool = tcmud::backstore::rbd_api::Image::open(pool(), &image, None, false).unwrap();
        let d = tcmud::backstore::rbd_api::Image::wait(|done| {
            tool.aio_write(32 * 512, pattern(4, 16), false, done)
        })
        .unwrap();
        d.result.unwrap();
        all(sims, None);
        // SET TARGET PORT GROUPS through daemon 1 takes it from the tool.
        let c = stpg(&mut sims[0], &[(AO, 1)]);
        assert_eq!((c.status, sense(&c.sense)), (0, (0, 0, 0)));
        all(sims, Some(1));
        drop(tool);
    });
    assert_eq!(read_back(&name, 0, 16 * 512), pattern(2, 16));
    assert_eq!(read_back(&name, 16 * 512, 16 * 512), pattern(3, 16));
}

/// The start of the two-daemon outage tests: a write of pattern `seed`
/// at block 0 through daemon 1 (`a`) takes the lock, both ports see it;
/// the bytes written.
fn a_takes_the_lock(a: &mut KernelSim, b: &mut KernelSim, seed: u8) -> Vec<u8> {
    clear_unit_attention(a);
    clear_unit_attention(b);
    let data = pattern(seed, 16);
    write(a, 0, &data);
    wait_states(a, &[(1, AO), (2, ANO)]);
    wait_states(b, &[(2, ANO), (1, AO)]);
    data
}

#[test]
fn a_daemon_that_loses_the_cluster_reports_its_port_unavailable_until_it_is_back() {
    let _outage = cluster_outage();
    let name = create_image("alua-outage", BYTES);
    daemons(&name, 2, ";osd_op_timeout=2", move |sims| {
        let [a, b] = sims else {
            unreachable!("two simulators")
        };
        let data = a_takes_the_lock(a, b, 5);
        cluster_sh("kill-osd");
        // A write through the owner times out (NOT READY: communication
        // failure, or the port already unavailable): its port is then
        // unavailable, the peer's the way in; the peer's watcher times out
        // on the lock's owners: its port is unavailable too.
        let c = one_slow(a, &write16(16, 16, false), SimDir::Out(pattern(6, 16)));
        assert_eq!(c.status, 2);
        assert!(
            [(2, 0x08, 0x00), (2, 0x04, 0x0C), (6, 0x2A, 0x06)].contains(&sense(&c.sense)),
            "{:?}",
            sense(&c.sense)
        );
        wait_states(a, &[(1, UNAVAILABLE), (2, AO)]);
        wait_states(b, &[(2, UNAVAILABLE), (1, AO)]);
        // Media access and TEST UNIT READY: NOT READY, TARGET PORT IN
        // UNAVAILABLE STATE, without waiting for the cluster.
        for sim in [&mut *a, &mut *b] {
            let c = one(sim, &[0; 6], SimDir::None);
            assert_eq!((c.status, sense(&c.sense)), (2, (2, 0x04, 0x0C)));
            let c = one(sim, &read16(0, 16), SimDir::In(16 * 512));
            assert_eq!((c.status, sense(&c.sense)), (2, (2, 0x04, 0x0C)));
        }
        cluster_sh("start-osd");
        // The watchers' next answers from the cluster: both ports back,
        // the lock still daemon 1's.
        wait_states(a, &[(1, AO), (2, ANO)]);
        wait_states(b, &[(2, ANO), (1, AO)]);
        let c = one_slow(a, &read16(0, 16), SimDir::In(16 * 512));
        assert_eq!(c.status, 0, "{:?}", sense(&c.sense));
        assert_eq!(c.data_in, data);
    });
}

#[test]
fn an_unavailable_owner_blocklisted_meanwhile_reopens_without_any_command() {
    let _outage = cluster_outage();
    let name = create_image("alua-blocklisted", BYTES);
    let image = name.clone();
    daemons(&name, 2, ";osd_op_timeout=2", move |sims| {
        let [a, b] = sims else {
            unreachable!("two simulators")
        };
        let data = a_takes_the_lock(a, b, 7);
        // Daemon 1's client: the lock's owner, one of the image's watchers.
        let tool = tcmud::backstore::rbd_api::Image::open(pool(), &image, None, false).unwrap();
        let owner = tool.lock_owners().unwrap();
        drop(tool);
        assert_eq!(owner.len(), 1, "{owner:?}");
        assert!(watchers(&image).contains(&owner[0]), "{owner:?}");
        // The cluster goes away under daemon 1's write: its port turns
        // unavailable and refuses every command from then on.
        cluster_sh("kill-osd");
        let c = one_slow(a, &write16(16, 16, false), SimDir::Out(pattern(8, 16)));
        assert_eq!(c.status, 2);
        wait_states(a, &[(1, UNAVAILABLE), (2, AO)]);
        // Meanwhile a peer's takeover blocklists it (the monitor answers
        // with the OSD down), then the cluster is back. No command reaches
        // daemon 1's backend now: its lock watcher must find out and reopen.
        ceph_cli("ceph", &["osd", "blocklist", "add", &owner[0]]).expect("blocklist add");
        cluster_sh("start-osd");
        let back = wait_until(a, "group 1 not unavailable", |s| s[0] != (1, UNAVAILABLE));
        eprintln!("daemon 1 available again after {back:?}: {:?}", rtpg(a));
        let c = one_slow(a, &read16(0, 16), SimDir::In(16 * 512));
        assert_eq!(c.status, 0, "{:?}", sense(&c.sense));
        assert_eq!(c.data_in, data);
    });
}

/// Not a test of its own: the lock holder the next test kills. Opens the
/// image named by TCMUD_TEST_ALUA_HOLDER, writes its pattern (which takes
/// the lock), prints `owner`, then waits to be killed.
#[test]
#[ignore = "run by dead_owners_lock_is_broken_by_the_next_write"]
fn alua_lock_holder_process() {
    let Some(name) = std::env::var_os("TCMUD_TEST_ALUA_HOLDER") else {
        return;
    };
    let name = name.to_string_lossy().into_owned();
    let img = tcmud::backstore::rbd_api::Image::open(pool(), &name, None, false).unwrap();
    let data = pattern(9, 16);
    let d =
        tcmud::backstore::rbd_api::Image::wait(|done| img.aio_write(0, data, false, done)).unwrap();
    d.result.unwrap();
    assert!(img.is_lock_owner().unwrap());
    println!("owner");
    // Until killed: stdin stays open and silent.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

#[test]
fn dead_owners_lock_is_broken_by_the_next_write() {
    let _cluster = cluster();
    let name = create_image("alua-dead", BYTES);
    // A daemon that holds the lock and dies (SIGKILL: no release).
    let mut holder = rerun(&test_name!(alua_lock_holder_process))
        .arg("--ignored")
        .env("TCMUD_TEST_ALUA_HOLDER", &name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = holder.stdout.take().unwrap();
    let owned = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.trim_end().ends_with("owner"));
    assert!(owned, "the holder never took the lock");
    let image = name.clone();
    let took = two_daemons(&name, move |a, b| {
        clear_unit_attention(a);
        clear_unit_attention(b);
        // The live holder is another client: both ports non-optimized,
        // each naming its peer's group optimized.
        wait_states(a, &[(1, ANO), (2, AO)]);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(holder.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        holder.wait().unwrap();
        // Daemon 2's write waits until librbd breaks the dead holder's lock
        // (its watch expired), then completes GOOD; daemon 2 is optimized.
        let start = Instant::now();
        let data = pattern(3, 16);
        write(b, 16, &data);
        let took = start.elapsed();
        wait_states(b, &[(2, AO), (1, ANO)]);
        wait_states(a, &[(1, ANO), (2, AO)]);
        // The holder's acknowledged write survived its death.
        let c = one(b, &read16(0, 32), SimDir::In(32 * 512));
        assert_eq!(c.status, 0);
        assert_eq!(&c.data_in[..16 * 512], &pattern(9, 16)[..]);
        assert_eq!(&c.data_in[16 * 512..], &data[..]);
        took
    });
    eprintln!("write after the owner's death took {took:?}");
    assert_eq!(read_back(&image, 0, 16 * 512), pattern(9, 16));
}
