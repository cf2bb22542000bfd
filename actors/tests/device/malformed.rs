//! Ring entries that fail validation are completed with CHECK CONDITION
//! (never dropped), and the device keeps serving the commands after them.

use std::sync::Arc;

use crate::util::device::workload::{clear_unit_attention, collect, read10};
use crate::util::device::{start, BS, BS_U32};
use tcmud::device::RestartBudget;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::sim::{Corruption, KernelSim, SimConfig, SimDir};

#[test]
fn malformed_commands_get_check_condition_and_service_goes_on() {
    let mem = Arc::new(MemBackend::new(BS_U32, 1024));
    actix::System::new().block_on(async move {
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let handle = start("bad", dev, mem, 2, RestartBudget::default(), None);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            clear_unit_attention(&mut sim);
            let region = sim.region_len() as u64;
            let bad_iov = sim.submit(&read10(0, 1), SimDir::In(BS)).unwrap();
            sim.corrupt(Corruption::IovBase(0, region * 4)).unwrap();
            let bad_cdb = sim.submit(&read10(1, 1), SimDir::In(BS)).unwrap();
            sim.corrupt(Corruption::CdbOffset(region + 64)).unwrap();
            let unknown = sim.submit(&read10(2, 1), SimDir::In(BS)).unwrap();
            sim.corrupt(Corruption::Opcode(5)).unwrap();
            let good = sim.submit(&read10(3, 1), SimDir::In(BS)).unwrap();
            sim.kick().unwrap();
            let done = collect(&mut sim, 4);
            let _ = tx.send((
                [bad_iov, bad_cdb, unknown, good],
                done,
                sim.broken().map(str::to_owned),
            ));
        });
        let ([bad_iov, bad_cdb, unknown, good], done, broken) = rx.await.unwrap();
        assert_eq!(broken, None);
        let find = |id: u16| done.iter().find(|c| c.cmd_id == id).expect("completed");
        let c = find(bad_iov);
        assert_eq!((c.status, c.sense[2] & 0xf, c.sense[12]), (2, 4, 0x44));
        let c = find(bad_cdb);
        assert_eq!((c.status, c.sense[2] & 0xf, c.sense[12]), (2, 5, 0x24));
        assert!(find(unknown).unknown_op);
        let c = find(good);
        assert_eq!((c.status, c.data_in.len()), (0, BS));
        assert_eq!(done.len(), 4);
        handle.stop().await;
    });
}
