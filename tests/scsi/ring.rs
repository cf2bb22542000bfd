//! End to end without a kernel: the simulator submits CDBs, the ring
//! fetches them, `Lun::execute` runs them over a MemBackend, and the
//! completions (status, sense, READ_LEN, data-in) come back through the ring.

use std::sync::Arc;
use std::time::Duration;

use crate::util::ring::fetch_cmds;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::ring::{Completion, DataIn, Ring};
use tcmud_core::scsi::{data_direction, status, DataDirection, Lun, LunConfig};
use tcmud_core::sim::{KernelSim, SimCompletion, SimConfig, SimDir};

/// Fetches every command, executes it and completes it; returns the
/// simulator's view of the completions.
fn serve(sim: &mut KernelSim, ring: &mut Ring, lun: &Lun) -> Vec<SimCompletion> {
    sim.kick().unwrap();
    ring.drain_events().unwrap();
    let cmds = fetch_cmds(ring);
    for c in cmds {
        let cdb = c.cdb.as_bytes();
        let len = c.data.len();
        let mut out = Vec::new();
        let mut din = Vec::new();
        match data_direction(cdb) {
            Some(DataDirection::Out) => {
                out = vec![0; len];
                ring.read_data_out(&c.data, &mut out).unwrap();
            }
            Some(DataDirection::In) => din = vec![0; len],
            _ => {}
        }
        let r = lun.execute(cdb, &out, &mut din);
        let done = match r.sense_bytes() {
            Some(sense) => Completion::check_condition(c.cmd_id, &sense),
            None => {
                ring.write_data_in(&c.data, &din[..r.data_in_len]).unwrap();
                Completion::status(c.cmd_id, r.status, None)
            }
        };
        let data_in = match data_direction(cdb) {
            Some(DataDirection::Out) => DataIn::data_out(&c.data),
            _ => DataIn::new(&c.data, r.data_in_len),
        };
        ring.complete(done, data_in).unwrap();
    }
    ring.kick().unwrap();
    assert!(sim.wait_kick(Duration::from_secs(2)).unwrap());
    let done = sim.process_completions().unwrap();
    assert_eq!(sim.broken(), None);
    done
}

#[test]
fn scsi_commands_round_trip_through_the_ring() {
    let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
    let mut ring = Ring::from_parts(&dev.map, dev.len, dev.event_fd).unwrap();
    let lun = Lun::new(LunConfig::default(), Arc::new(MemBackend::new(512, 2048)));

    // First command: POWER ON unit attention, as fixed sense in the ring.
    let tur = sim.submit(&[0x00, 0, 0, 0, 0, 0], SimDir::None).unwrap(); // TEST UNIT READY
    let done = serve(&mut sim, &mut ring, &lun);
    assert_eq!(
        (done[0].cmd_id, done[0].status),
        (tur, status::CHECK_CONDITION)
    );
    assert_eq!(
        (done[0].sense[0], done[0].sense[2], done[0].sense[12]),
        (0x70, 0x06, 0x29)
    );

    // WRITE(10) 16 blocks at LBA 100, READ(16) them back, INQUIRY short.
    let data: Vec<u8> = (0..16 * 512).map(|i| (i % 249) as u8).collect();
    let w = sim
        .submit(
            &[0x2A, 0, 0, 0, 0, 100, 0, 0, 16, 0],
            SimDir::Out(data.clone()),
        )
        .unwrap();
    let mut read16 = [0u8; 16];
    read16[0] = 0x88; // READ(16)
    read16[9] = 100; // LBA 100
    read16[13] = 16; // 16 blocks
    let r = sim.submit(&read16, SimDir::In(16 * 512)).unwrap();
    let inq = sim
        .submit(&[0x12, 0, 0, 0, 255, 0], SimDir::In(255))
        .unwrap(); // INQUIRY, alloc 255
    let oob = sim
        .submit(&[0x28, 0, 0, 0, 0x08, 0, 0, 0, 1, 0], SimDir::In(512))
        .unwrap(); // READ(10) LBA 2048
    let done = serve(&mut sim, &mut ring, &lun);
    let by_id = |id: u16| done.iter().find(|c| c.cmd_id == id).unwrap();
    assert_eq!(by_id(w).status, status::GOOD);
    assert_eq!(by_id(r).status, status::GOOD);
    assert_eq!(by_id(r).data_in, data);
    let i = by_id(inq);
    assert_eq!(
        i.read_len,
        Some(74),
        "short INQUIRY reported through READ_LEN"
    );
    assert_eq!(&i.data_in[8..13], b"TCMUD");
    let o = by_id(oob);
    assert_eq!(o.status, status::CHECK_CONDITION);
    assert_eq!((o.sense[2], o.sense[12], o.sense[13]), (0x05, 0x21, 0x00));
}
