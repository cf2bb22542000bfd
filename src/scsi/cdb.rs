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
impl Block10<'_> {
    /// Byte 1 (RDPROTECT/WRPROTECT/VRPROTECT, DPO, FUA, BYTCHK, IMMED...).
    pub fn flags(&self) -> u8 {
        self.0[1]
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
impl Block12<'_> {
    /// Byte 1 flags.
    pub fn flags(&self) -> u8 {
        self.0[1]
    }
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
impl Block16<'_> {
    /// Byte 1 flags.
    pub fn flags(&self) -> u8 {
        self.0[1]
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
    /// A 6-byte SPC CDB with an 8-bit length in byte 4 (INQUIRY keeps a
    /// 16-bit one in bytes 3-4): INQUIRY, MODE SENSE(6), MODE SELECT(6),
    /// REQUEST SENSE, START STOP UNIT, TEST UNIT READY.
    Spc6, 6
);
impl Spc6<'_> {
    /// Byte 1 (EVPD, DBD, PF/SP, DESC, IMMED).
    pub fn byte1(&self) -> u8 {
        self.0[1]
    }
    /// Byte 2 (PAGE CODE, PC).
    pub fn byte2(&self) -> u8 {
        self.0[2]
    }
    /// Byte 3 (SUBPAGE CODE).
    pub fn byte3(&self) -> u8 {
        self.0[3]
    }
    /// Byte 4 (ALLOCATION / PARAMETER LIST LENGTH, START/LOEJ).
    pub fn byte4(&self) -> u8 {
        self.0[4]
    }
}

view!(
    /// A 10-byte SPC CDB with a 16-bit length in bytes 7-8: MODE SENSE(10),
    /// MODE SELECT(10), UNMAP, READ CAPACITY(10) (LBA in 2-5, PMI in 8).
    Spc10, 10
);
impl Spc10<'_> {
    /// Byte 1 (LLBAA, DBD, PF, SP, ANCHOR).
    pub fn byte1(&self) -> u8 {
        self.0[1]
    }
    /// Byte 2 (PC, PAGE CODE).
    pub fn byte2(&self) -> u8 {
        self.0[2]
    }
    /// Byte 3 (SUBPAGE CODE).
    pub fn byte3(&self) -> u8 {
        self.0[3]
    }
    /// Bytes 2-5 (READ CAPACITY(10) LOGICAL BLOCK ADDRESS).
    pub fn lba(&self) -> u32 {
        be32([self.0[2], self.0[3], self.0[4], self.0[5]])
    }
    /// ALLOCATION LENGTH / PARAMETER LIST LENGTH (bytes 7-8).
    pub fn length(&self) -> u16 {
        be16([self.0[7], self.0[8]])
    }
    /// Byte 8 (READ CAPACITY(10) PMI).
    pub fn byte8(&self) -> u8 {
        self.0[8]
    }
}

view!(
    /// MAINTENANCE IN (12): REPORT SUPPORTED OPERATION CODES / TASK
    /// MANAGEMENT FUNCTIONS / TARGET PORT GROUPS.
    MaintenanceIn, 12
);
impl MaintenanceIn<'_> {
    /// Byte 2: RCTD (bit 7) and REPORTING OPTIONS (bits 2-0), or REPD (bit 7).
    pub fn byte2(&self) -> u8 {
        self.0[2]
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
