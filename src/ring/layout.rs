//! Byte layout of the TCMU shared region (ABI version 2), mirroring
//! `<linux/target_core_user.h>`.
//!
//! Every structure there is packed; every offset below is the byte offset of
//! a field from the start of its structure. Ring offsets (`cmd_head`,
//! `cmd_tail`) count from the start of the command ring; `cdb_off` and every
//! `iov_base` count from the START OF THE MAPPING.

/// `TCMU_MAILBOX_VERSION`.
pub const MAILBOX_VERSION: u16 = 2;
/// `sizeof(struct tcmu_mailbox)`: 128 (cmd_tail sits on its own cache line).
pub const MAILBOX_SIZE: usize = 128;
/// Mailbox `version: u16`.
pub const MB_VERSION: usize = 0;
/// Mailbox `flags: u16` (capabilities offered by the kernel).
pub const MB_FLAGS: usize = 2;
/// Mailbox `cmdr_off: u32` (offset of the command ring in the mapping).
pub const MB_CMDR_OFF: usize = 4;
/// Mailbox `cmdr_size: u32` (size of the command ring in bytes).
pub const MB_CMDR_SIZE: usize = 8;
/// Mailbox `cmd_head: u32`, written by the kernel.
pub const MB_CMD_HEAD: usize = 12;
/// Mailbox `cmd_tail: u32`, written by userspace (64-byte aligned).
pub const MB_CMD_TAIL: usize = 64;

/// `TCMU_MAILBOX_FLAG_CAP_OOOC`: out-of-order completions.
pub const CAP_OOOC: u16 = 1 << 0;
/// `TCMU_MAILBOX_FLAG_CAP_READ_LEN`: `rsp.read_len` is honoured.
pub const CAP_READ_LEN: u16 = 1 << 1;
/// `TCMU_MAILBOX_FLAG_CAP_TMR`: TMR notification entries may appear.
pub const CAP_TMR: u16 = 1 << 2;
/// `TCMU_MAILBOX_FLAG_CAP_KEEP_BUF`: data buffers may be kept after completion.
pub const CAP_KEEP_BUF: u16 = 1 << 3;

/// `TCMU_OP_MASK`: the low bits of `len_op` carry the opcode.
pub const OP_MASK: u32 = 0x7;
/// `TCMU_OP_PAD`: filler up to the end of the ring.
pub const OP_PAD: u32 = 0;
/// `TCMU_OP_CMD`: a SCSI command.
pub const OP_CMD: u32 = 1;
/// `TCMU_OP_TMR`: a task-management notification.
pub const OP_TMR: u32 = 2;
/// `TCMU_OP_ALIGN_SIZE`: entry lengths are multiples of 8.
pub const OP_ALIGN: u32 = 8;

/// `TCMU_UFLAG_UNKNOWN_OP`: userspace does not know this entry/command.
pub const UFLAG_UNKNOWN_OP: u8 = 0x1;
/// `TCMU_UFLAG_READ_LEN`: `rsp.read_len` is valid.
pub const UFLAG_READ_LEN: u8 = 0x2;
/// `TCMU_UFLAG_KEEP_BUF`: keep the data buffer after completion.
pub const UFLAG_KEEP_BUF: u8 = 0x4;

/// `sizeof(struct tcmu_cmd_entry_hdr)`.
pub const HDR_SIZE: usize = 8;
/// Header `len_op: u32`.
pub const HDR_LEN_OP: usize = 0;
/// Header `cmd_id: u16`.
pub const HDR_CMD_ID: usize = 4;
/// Header `kflags: u8`.
pub const HDR_KFLAGS: usize = 6;
/// Header `uflags: u8`.
pub const HDR_UFLAGS: usize = 7;

/// Request `iov_cnt: u32` (data-out or data-in iovs).
pub const REQ_IOV_CNT: usize = 8;
/// Request `iov_bidi_cnt: u32` (bidirectional data-in iovs, after the first).
pub const REQ_IOV_BIDI_CNT: usize = 12;
/// Request `iov_dif_cnt: u32` (unused by the kernel, always 0).
pub const REQ_IOV_DIF_CNT: usize = 16;
/// Request `cdb_off: u64` (from the start of the mapping).
pub const REQ_CDB_OFF: usize = 24;
/// Request `iov[]` array (`struct iovec`: base u64, len u64).
pub const REQ_IOV: usize = 48;
/// `sizeof(struct iovec)` on 64-bit.
pub const IOV_SIZE: usize = 16;
/// `iov_base` inside an iovec.
pub const IOV_BASE: usize = 0;
/// `iov_len` inside an iovec.
pub const IOV_LEN: usize = 8;

/// Response `scsi_status: u8`.
pub const RSP_SCSI_STATUS: usize = 8;
/// Response `read_len: u32`.
pub const RSP_READ_LEN: usize = 12;
/// Response `sense_buffer[96]`.
pub const RSP_SENSE: usize = 16;
/// `TCMU_SENSE_BUFFERSIZE`.
pub const SENSE_BUFFER_SIZE: usize = 96;
/// `sizeof(struct tcmu_cmd_entry)`: the smallest command entry (112).
pub const CMD_ENTRY_MIN: usize = RSP_SENSE + SENSE_BUFFER_SIZE;

/// TMR `tmr_type: u8`.
pub const TMR_TYPE: usize = 8;
/// TMR `cmd_cnt: u32`.
pub const TMR_CMD_CNT: usize = 12;
/// TMR `cmd_ids: u16[]`.
pub const TMR_CMD_IDS: usize = 32;
/// `sizeof(struct tcmu_tmr_entry)` without the id list.
pub const TMR_ENTRY_MIN: usize = 32;

/// Largest CDB the target core accepts (`SCSI_MAX_VARLEN_CDB_SIZE`).
pub const MAX_CDB_LEN: usize = 260;

/// Splits `len_op` into (length, opcode).
pub const fn split_len_op(len_op: u32) -> (u32, u32) {
    (len_op & !OP_MASK, len_op & OP_MASK)
}

/// Length of a CDB as the kernel's `scsi_command_size()` computes it from
/// its first byte (and byte 7 for variable-length CDBs, opcode 0x7f).
/// `byte7` is only consulted for opcode 0x7f.
pub const fn cdb_len(opcode: u8, byte7: u8) -> usize {
    if opcode == 0x7f {
        return byte7 as usize + 8;
    }
    match opcode >> 5 {
        0 => 6,
        1 | 2 => 10,
        3 => 12,
        4 => 16,
        5 => 12,
        _ => 10,
    }
}

/// The kernel's `tcmu_cmd_get_base_cmd_size`: header, request and `iovs`
/// iovecs, at least `sizeof(struct tcmu_cmd_entry)`.
pub const fn base_cmd_size(iovs: usize) -> usize {
    let s = REQ_IOV + iovs * IOV_SIZE;
    if s > CMD_ENTRY_MIN {
        s
    } else {
        CMD_ENTRY_MIN
    }
}

/// Rounds `v` up to a multiple of 8 (`TCMU_OP_ALIGN_SIZE`).
pub const fn align8(v: usize) -> usize {
    (v + 7) & !7
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    // Mirrors of the kernel structs, field for field, to pin the constants.
    #[allow(dead_code)]
    #[repr(C, packed)]
    struct Mailbox {
        version: u16,
        flags: u16,
        cmdr_off: u32,
        cmdr_size: u32,
        cmd_head: u32,
        _pad: [u8; 48],
        cmd_tail: u32,
        _tail_pad: [u8; 60],
    }
    #[allow(dead_code)]
    #[repr(C, packed)]
    struct Hdr {
        len_op: u32,
        cmd_id: u16,
        kflags: u8,
        uflags: u8,
    }
    // `struct iovec` and the union's inner structs are not packed: only the
    // outer `struct tcmu_cmd_entry` is, so the inner fields keep natural
    // alignment (cdb_off lands at 24, not 20).
    #[allow(dead_code)]
    #[repr(C)]
    struct Iovec {
        base: u64,
        len: u64,
    }
    #[allow(dead_code)]
    #[repr(C)]
    struct ReqBody {
        iov_cnt: u32,
        iov_bidi_cnt: u32,
        iov_dif_cnt: u32,
        cdb_off: u64,
        pad1: u64,
        pad2: u64,
        iov: [Iovec; 0],
    }
    #[allow(dead_code)]
    #[repr(C)]
    struct RspBody {
        scsi_status: u8,
        pad1: u8,
        pad2: u16,
        read_len: u32,
        sense: [u8; 96],
    }
    #[allow(dead_code)]
    #[repr(C, packed)]
    struct Req {
        hdr: Hdr,
        req: ReqBody,
    }
    #[allow(dead_code)]
    #[repr(C, packed)]
    struct Rsp {
        hdr: Hdr,
        rsp: RspBody,
    }
    #[allow(dead_code)]
    #[repr(C, packed)]
    struct Tmr {
        hdr: Hdr,
        tmr_type: u8,
        pad1: u8,
        pad2: u16,
        cmd_cnt: u32,
        pad3: u64,
        pad4: u64,
        cmd_ids: [u16; 0],
    }

    #[test]
    fn mailbox_layout() {
        assert_eq!(size_of::<Mailbox>(), MAILBOX_SIZE);
        assert_eq!(MAILBOX_SIZE, 128);
        assert_eq!(offset_of!(Mailbox, version), MB_VERSION);
        assert_eq!(offset_of!(Mailbox, flags), MB_FLAGS);
        assert_eq!(offset_of!(Mailbox, cmdr_off), MB_CMDR_OFF);
        assert_eq!(offset_of!(Mailbox, cmdr_size), MB_CMDR_SIZE);
        assert_eq!(offset_of!(Mailbox, cmd_head), MB_CMD_HEAD);
        assert_eq!(offset_of!(Mailbox, cmd_tail), MB_CMD_TAIL);
        assert_eq!(MB_CMD_TAIL, 64);
    }

    #[test]
    fn header_layout() {
        assert_eq!(size_of::<Hdr>(), HDR_SIZE);
        assert_eq!(HDR_SIZE, 8);
        assert_eq!(offset_of!(Hdr, len_op), HDR_LEN_OP);
        assert_eq!(offset_of!(Hdr, cmd_id), HDR_CMD_ID);
        assert_eq!(offset_of!(Hdr, kflags), HDR_KFLAGS);
        assert_eq!(offset_of!(Hdr, uflags), HDR_UFLAGS);
    }

    #[test]
    fn request_layout() {
        assert_eq!(offset_of!(Req, req.iov_cnt), REQ_IOV_CNT);
        assert_eq!(offset_of!(Req, req.iov_bidi_cnt), REQ_IOV_BIDI_CNT);
        assert_eq!(offset_of!(Req, req.iov_dif_cnt), REQ_IOV_DIF_CNT);
        assert_eq!(offset_of!(Req, req.cdb_off), REQ_CDB_OFF);
        assert_eq!(offset_of!(Req, req.iov), REQ_IOV);
        assert_eq!(REQ_IOV, 48);
        assert_eq!(size_of::<Iovec>(), IOV_SIZE);
        assert_eq!(offset_of!(Iovec, base), IOV_BASE);
        assert_eq!(offset_of!(Iovec, len), IOV_LEN);
    }

    #[test]
    fn response_layout() {
        assert_eq!(offset_of!(Rsp, rsp.scsi_status), RSP_SCSI_STATUS);
        assert_eq!(offset_of!(Rsp, rsp.read_len), RSP_READ_LEN);
        assert_eq!(offset_of!(Rsp, rsp.sense), RSP_SENSE);
        assert_eq!(RSP_SENSE, 16);
        assert_eq!(size_of::<Rsp>(), CMD_ENTRY_MIN);
        assert_eq!(CMD_ENTRY_MIN, 112);
        // The request view is no larger than the response view.
        assert!(size_of::<Req>() <= CMD_ENTRY_MIN);
    }

    #[test]
    fn tmr_layout() {
        assert_eq!(offset_of!(Tmr, tmr_type), TMR_TYPE);
        assert_eq!(offset_of!(Tmr, cmd_cnt), TMR_CMD_CNT);
        assert_eq!(offset_of!(Tmr, cmd_ids), TMR_CMD_IDS);
        assert_eq!(size_of::<Tmr>(), TMR_ENTRY_MIN);
        assert_eq!(TMR_CMD_IDS, 32);
    }

    #[test]
    fn helpers() {
        assert_eq!(split_len_op(0x71), (0x70, 1));
        assert_eq!(split_len_op(8), (8, OP_PAD));
        assert_eq!(cdb_len(0x00, 0), 6); // TEST UNIT READY
        assert_eq!(cdb_len(0x28, 0), 10); // READ(10)
        assert_eq!(cdb_len(0xa0, 0), 12); // REPORT LUNS
        assert_eq!(cdb_len(0x88, 0), 16); // READ(16)
        assert_eq!(cdb_len(0x7f, 24), 32); // variable length
        assert_eq!(cdb_len(0xc0, 0), 10); // vendor specific
        assert_eq!(base_cmd_size(0), 112);
        assert_eq!(base_cmd_size(4), 112);
        assert_eq!(base_cmd_size(5), 128);
        assert_eq!(align8(10), 16);
        assert_eq!(align8(16), 16);
    }
}
