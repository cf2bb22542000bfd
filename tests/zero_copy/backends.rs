//! The zero-copy contract off the ring: the default `read_into` /
//! `write_from`, the null and memory backends' own, sink/source prefixes,
//! and `Lun::execute_io` answering exactly like `Lun::execute`.

use std::sync::Arc;

use tcmud_core::backend::mem::MemBackend;
use tcmud_core::backend::null::NullBackend;
use tcmud_core::backend::{
    BackendCaps, BackendError, BlockBackend, BlockSink, BlockSource, SinkPrefix, SourcePrefix,
};
use tcmud_core::scsi::{Lun, LunConfig};

use crate::util::zero_copy::*;

/// A backend with only the required methods: the default `read_into` /
/// `write_from` run.
struct Basic(MemBackend);

impl BlockBackend for Basic {
    fn caps(&self) -> BackendCaps {
        self.0.caps()
    }
    fn read(&self, lba: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.0.read(lba, buf)
    }
    fn write(&self, lba: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.0.write(lba, data, fua)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.0.flush()
    }
    fn unmap(&self, lba: u64, blocks: u64) -> Result<(), BackendError> {
        self.0.unmap(lba, blocks)
    }
}

#[test]
fn default_read_into_and_write_from_go_through_read_and_write() {
    let b = Basic(MemBackend::new(512, 64));
    let data = pattern(5, 1536);
    b.write_from(3, &Opaque(data.clone()), false).unwrap();
    let mut sink = Opaque(vec![0xff; 2048]);
    b.read_into(2, &mut sink).unwrap();
    assert!(sink.0[..512].iter().all(|&x| x == 0));
    assert!(sink.0[512..] == data[..]);
    let mut plain = vec![0u8; 1024];
    b.read_into(4, &mut plain).unwrap();
    assert!(plain == data[512..]);
    assert!(matches!(
        b.read_into(63, &mut Opaque(vec![0; 1024])),
        Err(BackendError::OutOfRange { .. })
    ));
}

#[test]
fn null_and_mem_backends_fill_sinks_in_place() {
    let null = NullBackend::new(512, 16);
    let mut sink = Opaque(vec![0xee; 1024]);
    null.read_into(14, &mut sink).unwrap();
    assert!(sink.0.iter().all(|&b| b == 0));
    assert!(null.read_into(15, &mut sink).is_err());
    null.write_from(14, &Opaque(vec![1; 1024]), false).unwrap();
    assert!(null.write_from(15, &Opaque(vec![1; 1024]), false).is_err());

    // 8-block chunks: the read covers a written chunk, then a hole.
    let mem = MemBackend::new(512, 64);
    let data = pattern(2, 2048);
    mem.write_from(4, &Opaque(data.clone()), true).unwrap();
    assert_eq!(mem.stats().fua_writes, 1);
    let mut sink = Opaque(vec![0xee; 8 * 512]);
    mem.read_into(2, &mut sink).unwrap();
    assert!(sink.0[..1024].iter().all(|&b| b == 0));
    assert!(sink.0[1024..3072] == data[..]);
    assert!(sink.0[3072..].iter().all(|&b| b == 0));
    mem.fail_next_reads(1);
    assert!(matches!(
        mem.read_into(0, &mut sink),
        Err(BackendError::Read(_))
    ));
}

#[test]
fn prefixes_limit_their_range() {
    let mut v = pattern(4, 100);
    let mut p = SinkPrefix::new(&mut v, 50).unwrap();
    assert_eq!(p.len(), 50);
    assert!(p.write_at(40, &[0; 11]).is_err());
    p.zero_at(40, 10).unwrap();
    assert_eq!(p.as_mut_slice().map(|s| s.len()), Some(50));
    assert!(v[40..50].iter().all(|&b| b == 0) && v[50] != 0);
    assert!(SinkPrefix::new(&mut v, 101).is_none());
    let data = pattern(6, 10);
    let s = SourcePrefix::new(&data, 4).unwrap();
    assert_eq!(s.as_slice(), Some(&data[..4]));
    assert!(s.read_at(2, &mut [0; 3]).is_err());
    assert!(SourcePrefix::new(&data, 11).is_none());
}

/// `execute_io` over opaque buffers answers exactly like `execute` over
/// plain ones: data commands, replies, short buffers, errors.
#[test]
fn execute_io_matches_execute() {
    let a = Lun::new(LunConfig::default(), Arc::new(MemBackend::new(512, 256)));
    let b = Lun::new(LunConfig::default(), Arc::new(MemBackend::new(512, 256)));
    let w = pattern(8, 4 * 512);
    let mut caw = pattern(0, 512); // compare with what WRITE(10) put at LBA 2
    caw.extend(pattern(9, 512));
    let cases: Vec<(Vec<u8>, Vec<u8>, usize)> = vec![
        (vec![0; 6], vec![], 0),                                  // TUR: power-on UA
        (vec![0x2a, 0, 0, 0, 0, 1, 0, 0, 4, 0], w.clone(), 0),    // WRITE(10) at 1
        (vec![0x28, 0, 0, 0, 0, 0, 0, 0, 6, 0], vec![], 6 * 512), // READ(10)
        (vec![0x28, 0, 0, 0, 0, 0, 0, 0, 6, 0], vec![], 1000),    // short buffer
        (vec![0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![], 0),       // zero length
        (vec![0x28, 0, 0, 0, 1, 0, 0, 0, 1, 0], vec![], 512),     // out of range
        (vec![0x2a, 0, 0, 0, 0, 0, 0, 0, 2, 0], vec![1; 512], 0), // data-out too short
        (vec![0x12, 0, 0, 0, 96, 0], vec![], 96),                 // INQUIRY
        (vec![0x12, 0, 0, 0, 96, 0], vec![], 20),                 // INQUIRY, short
        (vec![0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], vec![], 8),       // READ CAPACITY(10)
        (
            [&[0x89u8, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0][..]].concat(),
            caw,
            0,
        ),
        (vec![0x41, 0, 0, 0, 0, 8, 0, 0, 2, 0], pattern(3, 512), 0), // WRITE SAME(10)
        (vec![0x2e, 0, 0, 0, 0, 16, 0, 0, 1, 0], w[..512].to_vec(), 0), // WRITE AND VERIFY
        (vec![0x28, 0, 0, 0, 0, 0, 0, 0, 20, 0], vec![], 20 * 512),
    ];
    for (cdb, out, in_len) in cases {
        let mut plain_in = vec![0x11u8; in_len];
        let ra = a.execute(&cdb, &out, &mut plain_in);
        let mut sink = Opaque(vec![0x11u8; in_len]);
        let rb = b.execute_io(&cdb, &Opaque(out.clone()), &mut sink);
        assert_eq!(ra, rb, "cdb {cdb:02x?}");
        assert!(plain_in == sink.0, "data-in of cdb {cdb:02x?}");
    }
}
