//! Arbitrary CDB + data-out bytes through `Lun::execute` (or, chosen by a
//! selector bit, `Lun::execute_io`, the zero-copy entry the daemon uses) on a
//! small thin MemBackend: must never panic, and must answer GOOD or a
//! well-formed CHECK CONDITION.
#![no_main]
#![warn(clippy::cast_possible_truncation)]

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
    let zero_copy = fault & 0x80 != 0;
    for _ in 0..2 {
        let r = if zero_copy {
            let mut sink: &mut [u8] = &mut din;
            let src: &[u8] = data_out;
            lun.execute_io(cdb, &src, &mut sink)
        } else {
            lun.execute(cdb, data_out, &mut din)
        };
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
