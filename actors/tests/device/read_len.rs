//! Short data-in transfers: with CAP_READ_LEN the device reports the real
//! length (READ_LEN).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::util::device::workload::clear_unit_attention;
use crate::util::device::{start, BS_U32};
use tcmud::device::RestartBudget;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::sim::{KernelSim, SimCompletion, SimConfig, SimDir};

#[test]
fn short_inquiry_reports_read_len() {
    let mem = Arc::new(MemBackend::new(BS_U32, 1024));
    let c: SimCompletion = actix::System::new().block_on(async move {
        let (mut sim, dev) = KernelSim::new(SimConfig::default()).unwrap();
        let handle = start("readlen", dev, mem, 1, RestartBudget::default(), None);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            clear_unit_attention(&mut sim);
            // INQUIRY, standard data, allocation length 255.
            sim.submit(&[0x12, 0, 0, 0, 255, 0], SimDir::In(255))
                .unwrap();
            sim.kick().unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let _ = sim.wait_kick(Duration::from_millis(20)).unwrap();
                if let Some(c) = sim.process_completions().unwrap().pop() {
                    let _ = tx.send(c);
                    return;
                }
                assert!(Instant::now() < deadline);
            }
        });
        let c = rx.await.unwrap();
        handle.stop().await;
        c
    });
    assert_eq!(c.status, 0);
    let n = c.read_len.expect("READ_LEN set for a short transfer") as usize;
    assert!(
        (36..255).contains(&n),
        "standard INQUIRY data is 36..255 bytes: {n}"
    );
    assert_eq!(c.data_in.len(), n);
    assert_eq!(
        usize::from(c.data_in[4]) + 5,
        n,
        "ADDITIONAL LENGTH matches"
    );
}
