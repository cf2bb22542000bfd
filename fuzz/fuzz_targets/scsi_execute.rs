//! Arbitrary CDB + data-out bytes through `Lun::execute` on a small thin
//! MemBackend: must never panic, and must answer GOOD or a well-formed
//! CHECK CONDITION.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tcmud_core::backend::mem::MemBackend;
use tcmud_core::scsi::{status, Lun, LunConfig};

fuzz_target!(|data: &[u8]| {
    let [len_sel, din_sel, fault, rest @ ..] = data else {
        return;
    };
    let cdb_len = usize::from(len_sel % 34);
    let (cdb, data_out) = rest.split_at(cdb_len.min(rest.len()));
    let mem = Arc::new(MemBackend::new(512, 128));
    match fault % 8 {
        1 => mem.fail_next_reads(1),
        2 => mem.fail_next_writes(1),
        3 => mem.set_chunk_limit(Some(1)),
        _ => {}
    }
    let cfg = LunConfig { max_transfer_blocks: 64, ..LunConfig::default() };
    let lun = Lun::new(cfg, mem);
    lun.execute(&[0, 0, 0, 0, 0, 0], &[], &mut []); // consume the power-on unit attention
    let mut din = vec![0u8; usize::from(*din_sel) * 257];
    for _ in 0..2 {
        let r = lun.execute(cdb, data_out, &mut din);
        assert!(r.data_in_len <= din.len());
        match r.status {
            status::GOOD => assert!(r.sense.is_none()),
            status::CHECK_CONDITION => {
                let f = r.sense.map(|s| s.to_fixed()).unwrap_or_default();
                assert_eq!(f[0] & 0x7F, 0x70);
                assert_ne!(f[12], 0);
            }
            s => panic!("unexpected status {s}"),
        }
    }
});
