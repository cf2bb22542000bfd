//! Checked views over CDBs. Each view checks the CDB length once when it is
//! built; its accessors (named after the T10 fields) then cannot panic:
//! they index fixed-size arrays with constant offsets.

use super::error::ScsiError;

macro_rules! view {
    ($(#[$m:meta])* $name:ident, $len:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name<'a>(&'a [u8; $len]);
        impl<'a> $name<'a> {
            /// Checks the length and builds the view.
            pub fn parse(cdb: &'a [u8]) -> Result<Self, ScsiError> {
                match cdb.get(..$len).and_then(|s| <&[u8; $len]>::try_from(s).ok()) {
                    Some(a) => Ok($name(a)),
                    None => Err(ScsiError::InvalidFieldInCdb { byte: 0, bit: None }),
                }
            }
        }
    };
}

fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}
fn be32(b: [u8; 4]) -> u32 {
    u32::from_be_bytes(b)
}
fn be64(b: [u8; 8]) -> u64 {
    u64::from_be_bytes(b)
}

/// SERVICE ACTION (byte 1, bits 4-0) of the opcodes that carry one
/// (MAINTENANCE IN, SERVICE ACTION IN(16), ...), read before the command
/// (hence its CDB length) is known: `None` for a CDB too short to hold it.
pub(crate) fn service_action(cdb: &[u8]) -> Option<u8> {
    cdb.get(1).map(|b| b & 0x1F)
}

/// Byte 1 of the SBC block CDBs (10/12/16), whose bits each command names
/// in its own way (SBC-4 5.x): the protect field, FUA and BYTCHK. DPO (bit
/// 4) and RARC (bit 2) of READ/WRITE are cache hints no handler reads, so
/// they have no accessor (`Block10/16::anchor` reads bit 4 of WRITE SAME).
macro_rules! block_byte1 {
    ($name:ident) => {
        impl $name<'_> {
            /// RDPROTECT (READ), WRPROTECT (WRITE, WRITE AND VERIFY, WRITE
            /// SAME) or VRPROTECT (VERIFY): byte 1, bits 7-5.
            pub fn protect(&self) -> u8 {
                self.0[1] >> 5
            }
            /// FUA (byte 1, bit 3) of READ/WRITE: force unit access.
            pub fn fua(&self) -> bool {
                self.0[1] & 0x08 != 0
            }
            /// BYTCHK (byte 1, bits 2-1) of VERIFY and WRITE AND VERIFY.
            pub fn bytchk(&self) -> u8 {
                (self.0[1] >> 1) & 0x03
            }
        }
    };
}

view!(
    /// READ(6) / WRITE(6).
    Rw6, 6
);
impl Rw6<'_> {
    /// LOGICAL BLOCK ADDRESS (21 bits).
    pub fn lba(&self) -> u64 {
        u64::from(be32([0, self.0[1] & 0x1F, self.0[2], self.0[3]]))
    }
    /// TRANSFER LENGTH; 0 means 256 blocks.
    pub fn transfer_length(&self) -> u32 {
        match self.0[4] {
            0 => 256,
            n => u32::from(n),
        }
    }
}

view!(
    /// The SBC 10-byte block CDB: READ/WRITE/VERIFY/WRITE AND VERIFY/
    /// PRE-FETCH/SYNCHRONIZE CACHE (10) and WRITE SAME (10).
    Block10, 10
);
block_byte1!(Block10);
impl Block10<'_> {
    /// ANCHOR (byte 1, bit 4) of WRITE SAME(10).
    pub fn anchor(&self) -> bool {
        self.0[1] & 0x10 != 0
    }
    /// UNMAP (byte 1, bit 3) of WRITE SAME(10).
    pub fn unmap(&self) -> bool {
        self.0[1] & 0x08 != 0
    }
    /// LOGICAL BLOCK ADDRESS.
    pub fn lba(&self) -> u64 {
        u64::from(be32([self.0[2], self.0[3], self.0[4], self.0[5]]))
    }
    /// TRANSFER LENGTH / VERIFICATION LENGTH / NUMBER OF LOGICAL BLOCKS.
    pub fn transfer_length(&self) -> u32 {
        u32::from(be16([self.0[7], self.0[8]]))
    }
}

view!(
    /// The SBC 12-byte block CDB: READ/WRITE/VERIFY/WRITE AND VERIFY (12).
    Block12, 12
);
block_byte1!(Block12);
impl Block12<'_> {
    /// LOGICAL BLOCK ADDRESS.
    pub fn lba(&self) -> u64 {
        u64::from(be32([self.0[2], self.0[3], self.0[4], self.0[5]]))
    }
    /// TRANSFER LENGTH.
    pub fn transfer_length(&self) -> u32 {
        be32([self.0[6], self.0[7], self.0[8], self.0[9]])
    }
}

view!(
    /// The SBC 16-byte block CDB: READ/WRITE/VERIFY/WRITE AND VERIFY/
    /// PRE-FETCH/SYNCHRONIZE CACHE/WRITE SAME (16).
    Block16, 16
);
block_byte1!(Block16);
impl Block16<'_> {
    /// ANCHOR (byte 1, bit 4) of WRITE SAME(16).
    pub fn anchor(&self) -> bool {
        self.0[1] & 0x10 != 0
    }
    /// UNMAP (byte 1, bit 3) of WRITE SAME(16).
    pub fn unmap(&self) -> bool {
        self.0[1] & 0x08 != 0
    }
    /// NDOB (byte 1, bit 0) of WRITE SAME(16): no data-out buffer, the
    /// blocks are zeroed.
    pub fn ndob(&self) -> bool {
        self.0[1] & 0x01 != 0
    }
    /// LOGICAL BLOCK ADDRESS.
    pub fn lba(&self) -> u64 {
        let b = self.0;
        be64([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]])
    }
    /// TRANSFER LENGTH / NUMBER OF LOGICAL BLOCKS.
    pub fn transfer_length(&self) -> u32 {
        be32([self.0[10], self.0[11], self.0[12], self.0[13]])
    }
}

view!(
    /// WRITE ATOMIC(16) (SBC-4 5.48): a 16-bit ATOMIC BOUNDARY in bytes
    /// 10-11 and a 16-bit TRANSFER LENGTH in bytes 12-13.
    WriteAtomic16, 16
);
impl WriteAtomic16<'_> {
    /// WRPROTECT (byte 1, bits 7-5).
    pub fn wrprotect(&self) -> u8 {
        self.0[1] >> 5
    }
    /// FUA (byte 1, bit 3).
    pub fn fua(&self) -> bool {
        self.0[1] & 0x08 != 0
    }
    /// LOGICAL BLOCK ADDRESS.
    pub fn lba(&self) -> u64 {
        let b = self.0;
        be64([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]])
    }
    /// ATOMIC BOUNDARY (bytes 10-11).
    pub fn atomic_boundary(&self) -> u16 {
        be16([self.0[10], self.0[11]])
    }
    /// TRANSFER LENGTH (bytes 12-13).
    pub fn transfer_length(&self) -> u16 {
        be16([self.0[12], self.0[13]])
    }
}

view!(
    /// COMPARE AND WRITE (SBC-4 5.3): an 8-bit NUMBER OF LOGICAL BLOCKS in
    /// byte 13, unlike the other 16-byte block CDBs.
    CompareAndWrite, 16
);
impl CompareAndWrite<'_> {
    /// WRPROTECT (byte 1, bits 7-5).
    pub fn wrprotect(&self) -> u8 {
        self.0[1] >> 5
    }
    /// FUA (byte 1, bit 3).
    pub fn fua(&self) -> bool {
        self.0[1] & 0x08 != 0
    }
    /// LOGICAL BLOCK ADDRESS.
    pub fn lba(&self) -> u64 {
        let b = self.0;
        be64([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]])
    }
    /// NUMBER OF LOGICAL BLOCKS (byte 13).
    pub fn number_of_logical_blocks(&self) -> u8 {
        self.0[13]
    }
}

view!(
    /// INQUIRY (SPC-4 6.6).
    Inquiry, 6
);
impl Inquiry<'_> {
    /// CMDDT (byte 1, bit 1, obsolete).
    pub fn cmddt(&self) -> bool {
        self.0[1] & 0x02 != 0
    }
    /// EVPD (byte 1, bit 0): enable vital product data.
    pub fn evpd(&self) -> bool {
        self.0[1] & 0x01 != 0
    }
    /// PAGE CODE (byte 2).
    pub fn page_code(&self) -> u8 {
        self.0[2]
    }
}

view!(
    /// REQUEST SENSE (SPC-4 6.39).
    RequestSense, 6
);
impl RequestSense<'_> {
    /// DESC (byte 1, bit 0): descriptor-format sense data.
    pub fn desc(&self) -> bool {
        self.0[1] & 0x01 != 0
    }
}

view!(
    /// START STOP UNIT (SBC-3 5.25).
    StartStopUnit, 6
);
impl StartStopUnit<'_> {
    /// IMMED (byte 1, bit 0).
    pub fn immed(&self) -> bool {
        self.0[1] & 0x01 != 0
    }
    /// Byte 2 (reserved).
    pub fn reserved2(&self) -> u8 {
        self.0[2]
    }
    /// Byte 3: POWER CONDITION MODIFIER (bits 3-0) and reserved bits.
    pub fn power_condition_modifier(&self) -> u8 {
        self.0[3]
    }
    /// POWER CONDITION (byte 4, bits 7-4).
    pub fn power_condition(&self) -> u8 {
        self.0[4] >> 4
    }
    /// NO_FLUSH (byte 4, bit 2).
    pub fn no_flush(&self) -> bool {
        self.0[4] & 0x04 != 0
    }
    /// LOEJ (byte 4, bit 1): load or eject the medium.
    pub fn loej(&self) -> bool {
        self.0[4] & 0x02 != 0
    }
    /// START (byte 4, bit 0).
    pub fn start(&self) -> bool {
        self.0[4] & 0x01 != 0
    }
}

view!(
    /// SEND DIAGNOSTIC (SPC-4 6.42).
    SendDiagnostic, 6
);
impl SendDiagnostic<'_> {
    /// SELF-TEST CODE (byte 1, bits 7-5).
    pub fn self_test_code(&self) -> u8 {
        self.0[1] >> 5
    }
    /// SELFTEST (byte 1, bit 2): the default self-test.
    pub fn selftest(&self) -> bool {
        self.0[1] & 0x04 != 0
    }
    /// PARAMETER LIST LENGTH (bytes 3-4).
    pub fn parameter_list_length(&self) -> u16 {
        be16([self.0[3], self.0[4]])
    }
}

view!(
    /// MODE SENSE(6) (SPC-4 6.11).
    ModeSense6, 6
);
impl ModeSense6<'_> {
    /// DBD (byte 1, bit 3): disable block descriptors.
    pub fn dbd(&self) -> bool {
        self.0[1] & 0x08 != 0
    }
    /// PC (byte 2, bits 7-6): page control.
    pub fn pc(&self) -> u8 {
        self.0[2] >> 6
    }
    /// PAGE CODE (byte 2, bits 5-0).
    pub fn page_code(&self) -> u8 {
        self.0[2] & 0x3F
    }
    /// SUBPAGE CODE (byte 3).
    pub fn subpage_code(&self) -> u8 {
        self.0[3]
    }
}

view!(
    /// MODE SENSE(10) (SPC-4 6.12).
    ModeSense10, 10
);
impl ModeSense10<'_> {
    /// LLBAA (byte 1, bit 4): long LBA block descriptors accepted.
    pub fn llbaa(&self) -> bool {
        self.0[1] & 0x10 != 0
    }
    /// DBD (byte 1, bit 3): disable block descriptors.
    pub fn dbd(&self) -> bool {
        self.0[1] & 0x08 != 0
    }
    /// PC (byte 2, bits 7-6): page control.
    pub fn pc(&self) -> u8 {
        self.0[2] >> 6
    }
    /// PAGE CODE (byte 2, bits 5-0).
    pub fn page_code(&self) -> u8 {
        self.0[2] & 0x3F
    }
    /// SUBPAGE CODE (byte 3).
    pub fn subpage_code(&self) -> u8 {
        self.0[3]
    }
}

view!(
    /// MODE SELECT(6) (SPC-4 6.9).
    ModeSelect6, 6
);
impl ModeSelect6<'_> {
    /// PF (byte 1, bit 4): page format.
    pub fn pf(&self) -> bool {
        self.0[1] & 0x10 != 0
    }
    /// SP (byte 1, bit 0): save pages.
    pub fn sp(&self) -> bool {
        self.0[1] & 0x01 != 0
    }
    /// PARAMETER LIST LENGTH (byte 4).
    pub fn parameter_list_length(&self) -> u8 {
        self.0[4]
    }
}

view!(
    /// MODE SELECT(10) (SPC-4 6.10).
    ModeSelect10, 10
);
impl ModeSelect10<'_> {
    /// PF (byte 1, bit 4): page format.
    pub fn pf(&self) -> bool {
        self.0[1] & 0x10 != 0
    }
    /// SP (byte 1, bit 0): save pages.
    pub fn sp(&self) -> bool {
        self.0[1] & 0x01 != 0
    }
    /// PARAMETER LIST LENGTH (bytes 7-8).
    pub fn parameter_list_length(&self) -> u16 {
        be16([self.0[7], self.0[8]])
    }
}

view!(
    /// READ CAPACITY(10) (SBC-3 5.15).
    ReadCapacity10, 10
);
impl ReadCapacity10<'_> {
    /// LOGICAL BLOCK ADDRESS (bytes 2-5, obsolete).
    pub fn lba(&self) -> u32 {
        be32([self.0[2], self.0[3], self.0[4], self.0[5]])
    }
    /// PMI (byte 8, bit 0, obsolete): partial medium indicator.
    pub fn pmi(&self) -> bool {
        self.0[8] & 0x01 != 0
    }
}

view!(
    /// UNMAP (SBC-3 5.28).
    Unmap, 10
);
impl Unmap<'_> {
    /// ANCHOR (byte 1, bit 0).
    pub fn anchor(&self) -> bool {
        self.0[1] & 0x01 != 0
    }
    /// PARAMETER LIST LENGTH (bytes 7-8).
    pub fn parameter_list_length(&self) -> u16 {
        be16([self.0[7], self.0[8]])
    }
}

view!(
    /// REPORT LUNS (SPC-4 6.33).
    ReportLuns, 12
);
impl ReportLuns<'_> {
    /// SELECT REPORT (byte 2).
    pub fn select_report(&self) -> u8 {
        self.0[2]
    }
    /// ALLOCATION LENGTH (bytes 6-9).
    pub fn allocation_length(&self) -> u32 {
        be32([self.0[6], self.0[7], self.0[8], self.0[9]])
    }
}

view!(
    /// MAINTENANCE OUT (12): SET TARGET PORT GROUPS.
    MaintenanceOut, 12
);
impl MaintenanceOut<'_> {
    /// PARAMETER LIST LENGTH (bytes 6-9).
    pub fn parameter_list_length(&self) -> u32 {
        be32([self.0[6], self.0[7], self.0[8], self.0[9]])
    }
}

view!(
    /// MAINTENANCE IN (12): REPORT SUPPORTED OPERATION CODES / TASK
    /// MANAGEMENT FUNCTIONS / TARGET PORT GROUPS.
    MaintenanceIn, 12
);
impl MaintenanceIn<'_> {
    /// RCTD (byte 2, bit 7) of REPORT SUPPORTED OPERATION CODES: return
    /// command timeouts descriptors.
    pub fn rctd(&self) -> bool {
        self.0[2] & 0x80 != 0
    }
    /// REPD (byte 2, bit 7) of REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS:
    /// the extended parameter data.
    pub fn repd(&self) -> bool {
        self.0[2] & 0x80 != 0
    }
    /// REPORTING OPTIONS (byte 2, bits 2-0) of REPORT SUPPORTED OPERATION
    /// CODES.
    pub fn reporting_options(&self) -> u8 {
        self.0[2] & 0x07
    }
    /// REQUESTED OPERATION CODE.
    pub fn requested_opcode(&self) -> u8 {
        self.0[3]
    }
    /// REQUESTED SERVICE ACTION.
    pub fn requested_service_action(&self) -> u16 {
        be16([self.0[4], self.0[5]])
    }
    /// PARAMETER DATA FORMAT of REPORT TARGET PORT GROUPS (byte 1, bits
    /// 7-5).
    pub fn parameter_data_format(&self) -> u8 {
        self.0[1] >> 5
    }
}

view!(
    /// LOG SENSE (SPC-4 6.6).
    LogSense, 10
);
impl LogSense<'_> {
    /// SP (byte 1, bit 0): save parameters.
    pub fn sp(&self) -> bool {
        self.0[1] & 0x01 != 0
    }
    /// PPC (byte 1, bit 1, obsolete): parameter pointer control.
    pub fn ppc(&self) -> bool {
        self.0[1] & 0x02 != 0
    }
    /// PAGE CODE (byte 2, bits 5-0).
    pub fn page_code(&self) -> u8 {
        self.0[2] & 0x3F
    }
    /// SUBPAGE CODE.
    pub fn subpage_code(&self) -> u8 {
        self.0[3]
    }
    /// PARAMETER POINTER.
    pub fn parameter_pointer(&self) -> u16 {
        be16([self.0[5], self.0[6]])
    }
}

view!(
    /// READ DEFECT DATA(10) (SBC-4 5.17).
    ReadDefectData10, 10
);
impl ReadDefectData10<'_> {
    /// REQ_PLIST, REQ_GLIST and DEFECT LIST FORMAT (byte 2, bits 4-0).
    pub fn request(&self) -> u8 {
        self.0[2] & 0x1F
    }
    /// Reserved bits of byte 2 (7-5).
    pub fn byte2_reserved(&self) -> u8 {
        self.0[2] >> 5
    }
}

view!(
    /// READ DEFECT DATA(12) (SBC-4 5.18).
    ReadDefectData12, 12
);
impl ReadDefectData12<'_> {
    /// REQ_PLIST, REQ_GLIST and DEFECT LIST FORMAT (byte 1, bits 4-0).
    pub fn request(&self) -> u8 {
        self.0[1] & 0x1F
    }
    /// Reserved bits of byte 1 (7-5).
    pub fn byte1_reserved(&self) -> u8 {
        self.0[1] >> 5
    }
}

view!(
    /// SANITIZE (SBC-4 5.30).
    Sanitize, 10
);
impl Sanitize<'_> {
    /// ZNR (byte 1, bit 6): zoned no reset (not a zoned device: must be 0).
    pub fn znr(&self) -> bool {
        self.0[1] & 0x40 != 0
    }
    /// AUSE (byte 1, bit 5): allow unrestricted sanitize exit.
    pub fn ause(&self) -> bool {
        self.0[1] & 0x20 != 0
    }
    /// The first non-zero reserved byte (2-6), if any.
    pub fn reserved_byte(&self) -> Option<u16> {
        (2u16..=6).find(|&i| self.0[usize::from(i)] != 0)
    }
    /// PARAMETER LIST LENGTH.
    pub fn parameter_list_length(&self) -> u16 {
        be16([self.0[7], self.0[8]])
    }
}

view!(
    /// EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4, 6.18):
    /// the 16-byte third-party copy CDBs.
    ThirdPartyCopy, 16
);
impl ThirdPartyCopy<'_> {
    /// LIST IDENTIFIER (RECEIVE COPY RESULTS, byte 2).
    pub fn list_identifier(&self) -> u8 {
        self.0[2]
    }
    /// The first non-zero reserved byte (2-9 of EXTENDED COPY, 3-9 of
    /// RECEIVE COPY RESULTS from `from`), if any.
    pub fn reserved_byte(&self, from: u16) -> Option<u16> {
        (from..=9).find(|&i| self.0[usize::from(i)] != 0)
    }
    /// PARAMETER LIST LENGTH (EXTENDED COPY) or ALLOCATION LENGTH
    /// (RECEIVE COPY RESULTS), bytes 10-13.
    pub fn length(&self) -> u32 {
        be32([self.0[10], self.0[11], self.0[12], self.0[13]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spc_views_read_their_t10_fields() {
        // INQUIRY: EVPD=1, PAGE CODE B0h, ALLOCATION LENGTH 0100h.
        let c = Inquiry::parse(&[0x12, 0x01, 0xB0, 0x01, 0x00, 0x00]).unwrap();
        assert!(c.evpd() && !c.cmddt());
        assert_eq!(c.page_code(), 0xB0);
        // MODE SENSE(10): LLBAA, DBD; PC=01b, PAGE CODE 08h; SUBPAGE FFh.
        let c = ModeSense10::parse(&[0x5A, 0x18, 0x48, 0xFF, 0, 0, 0, 0, 0xFC, 0]).unwrap();
        assert!(c.llbaa() && c.dbd());
        assert_eq!((c.pc(), c.page_code(), c.subpage_code()), (1, 0x08, 0xFF));
        // MODE SELECT(6): PF, SP; PARAMETER LIST LENGTH 18h.
        let c = ModeSelect6::parse(&[0x15, 0x11, 0, 0, 0x18, 0]).unwrap();
        assert!(c.pf() && c.sp());
        assert_eq!(c.parameter_list_length(), 0x18);
        // SEND DIAGNOSTIC: SELF-TEST CODE 010b; PARAMETER LIST LENGTH 0102h.
        let c = SendDiagnostic::parse(&[0x1D, 0x40, 0, 0x01, 0x02, 0]).unwrap();
        assert_eq!((c.self_test_code(), c.selftest()), (2, false));
        assert_eq!(c.parameter_list_length(), 0x0102);
        // START STOP UNIT: IMMED; POWER CONDITION 3h, LOEJ, START.
        let c = StartStopUnit::parse(&[0x1B, 0x01, 0, 0, 0x33, 0]).unwrap();
        assert!(c.immed() && c.loej() && c.start() && !c.no_flush());
        assert_eq!(c.power_condition(), 3);
        // REPORT LUNS: SELECT REPORT 02h; ALLOCATION LENGTH 00010010h.
        let c = ReportLuns::parse(&[0xA0, 0, 0x02, 0, 0, 0, 0, 0x01, 0x00, 0x10, 0, 0]).unwrap();
        assert_eq!((c.select_report(), c.allocation_length()), (2, 0x0001_0010));
    }

    #[test]
    fn sbc_views_read_their_t10_fields() {
        // READ CAPACITY(10): LBA 01020304h, PMI.
        let c = ReadCapacity10::parse(&[0x25, 0, 1, 2, 3, 4, 0, 0, 0x01, 0]).unwrap();
        assert_eq!((c.lba(), c.pmi()), (0x0102_0304, true));
        // UNMAP: ANCHOR; PARAMETER LIST LENGTH 0018h.
        let c = Unmap::parse(&[0x42, 0x01, 0, 0, 0, 0, 0, 0x00, 0x18, 0]).unwrap();
        assert_eq!((c.anchor(), c.parameter_list_length()), (true, 0x18));
    }

    #[test]
    fn block_views_read_their_byte1_fields() {
        // READ(10): RDPROTECT 101b, DPO (no accessor), FUA; LBA 01020304h;
        // 0010h blocks.
        let c = Block10::parse(&[0x28, 0xB8, 1, 2, 3, 4, 0, 0x00, 0x10, 0]).unwrap();
        assert_eq!((c.protect(), c.fua(), c.bytchk()), (5, true, 0));
        assert_eq!((c.lba(), c.transfer_length()), (0x0102_0304, 0x10));
        // VERIFY(12): VRPROTECT 0, BYTCHK 11b, no FUA.
        let c = Block12::parse(&[0xAF, 0x06, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]).unwrap();
        assert_eq!((c.protect(), c.bytchk(), c.fua()), (0, 3, false));
        // WRITE SAME(16): WRPROTECT 001b, ANCHOR, UNMAP, NDOB.
        let mut w = [0u8; 16];
        (w[0], w[1]) = (0x93, 0x39);
        let c = Block16::parse(&w).unwrap();
        assert_eq!(
            (c.protect(), c.anchor(), c.unmap(), c.ndob()),
            (1, true, true, true)
        );
        // WRITE SAME(10): UNMAP only (bit 0 is reserved there).
        let c = Block10::parse(&[0x41, 0x09, 0, 0, 0, 0, 0, 0, 1, 0]).unwrap();
        assert_eq!((c.anchor(), c.unmap(), c.protect()), (false, true, 0));
        // The service action: byte 1, bits 4-0, absent from a 1-byte CDB.
        assert_eq!(service_action(&[0x9E, 0xF0]), Some(0x10));
        assert_eq!(service_action(&[0x9E]), None);
    }

    #[test]
    fn a_short_cdb_is_refused_by_its_view() {
        assert!(matches!(
            ReportLuns::parse(&[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(ScsiError::InvalidFieldInCdb { byte: 0, bit: None })
        ));
        assert!(ModeSense10::parse(&[0x5A, 0, 0x3F]).is_err());
    }
}
