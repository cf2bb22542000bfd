//! The command table: one row per command, from which parsing, dispatch and
//! REPORT SUPPORTED OPERATION CODES all derive.

use super::cdb::service_action;
use super::data_out::{self as o, OutCheck};
use super::error::ScsiError;
use super::fixed_len::u8_len;
use super::{copy, sbc, spc};
use crate::backend::BackendCaps;

/// Direction of a command's data transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDirection {
    /// No data.
    None,
    /// Device to initiator (data-in).
    In,
    /// Initiator to device (data-out).
    Out,
}

/// Where a command's ALLOCATION LENGTH field lives, applied once by the
/// dispatcher to every reply.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AllocLen {
    /// The reply is not truncated by a CDB field.
    None,
    /// One byte at this offset.
    U8(usize),
    /// Big-endian u16 at this offset.
    U16(usize),
    /// Big-endian u32 at this offset.
    U32(usize),
}

impl AllocLen {
    fn get(self, cdb: &[u8]) -> usize {
        let field = |at: usize, w: usize| {
            cdb.get(at..at + w).map_or(0, |b| {
                b.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x))
            })
        };
        match self {
            AllocLen::None => usize::MAX,
            AllocLen::U8(at) => field(at, 1),
            AllocLen::U16(at) => field(at, 2),
            AllocLen::U32(at) => field(at, 4),
        }
    }
}

use super::ctx::{Ctx, Handler, Reply};

/// Facts about a command that the LUN and the daemon act on, held by its
/// row rather than by opcode lists elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    /// Its data-out streams from the caller's source into the backend
    /// (WRITE, WRITE AND VERIFY); other data-out commands get a plain copy
    /// sized by the CDB.
    pub streams_data_out: bool,
    /// A pending unit attention does not block it (SAM-5 5.14: INQUIRY,
    /// REPORT LUNS, REQUEST SENSE).
    pub ua_exempt: bool,
    /// It may run on the caller's thread when the backend can serve it
    /// without waiting ([`Lun::try_execute_nowait`](super::Lun::try_execute_nowait)): no data-out, no side
    /// effects (READ).
    pub may_run_inline: bool,
    /// Running it again after a panic part-way through gives the same
    /// result: false for commands whose outcome depends on what they read
    /// before writing (COMPARE AND WRITE).
    pub safe_to_retry: bool,
    /// What the daemon's latency histograms file it under.
    pub class: OpClass,
    /// Only LUNs with ALUA configured support it (REPORT TARGET PORT
    /// GROUPS); REPORT SUPPORTED OPERATION CODES lists it only there.
    pub needs_alua: bool,
    /// A port in the ALUA standby state still serves it (SPC-4 5.15.2.4.4:
    /// INQUIRY, REPORT LUNS, REQUEST SENSE, MODE and LOG pages, REPORT and
    /// SET TARGET PORT GROUPS, PERSISTENT RESERVE, SEND DIAGNOSTIC, REPORT
    /// SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS); every other
    /// command gets NOT READY, TARGET PORT IN STANDBY STATE there.
    pub standby_ok: bool,
    /// A port in the ALUA unavailable state still serves it (SPC-4
    /// 5.15.2.4.5: INQUIRY, REPORT LUNS, REQUEST SENSE, REPORT and SET
    /// TARGET PORT GROUPS, REPORT SUPPORTED OPERATION CODES / TASK
    /// MANAGEMENT FUNCTIONS); every other command gets NOT READY, TARGET
    /// PORT IN UNAVAILABLE STATE there.
    pub unavailable_ok: bool,
}

/// Operation classes, for per-class statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// READ (6/10/12/16).
    Read,
    /// Commands that write blocks: WRITE, WRITE AND VERIFY, WRITE SAME,
    /// COMPARE AND WRITE, ORWRITE.
    Write,
    /// SYNCHRONIZE CACHE (10/16).
    Flush,
    /// UNMAP.
    Unmap,
    /// Everything else (and unsupported opcodes).
    Other,
}

impl OpClass {
    /// Every class, in [`OpClass::index`] order.
    pub const ALL: [OpClass; 5] = [
        OpClass::Read,
        OpClass::Write,
        OpClass::Flush,
        OpClass::Unmap,
        OpClass::Other,
    ];

    /// Position in [`OpClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name (a metric label value).
    pub fn name(self) -> &'static str {
        match self {
            OpClass::Read => "read",
            OpClass::Write => "write",
            OpClass::Flush => "flush",
            OpClass::Unmap => "unmap",
            OpClass::Other => "other",
        }
    }

    /// The class of a CDB's command ([`OpClass::Other`] when unsupported).
    pub fn of(cdb: &[u8]) -> OpClass {
        lookup(cdb).map_or(OpClass::Other, |c| c.facts.class)
    }
}

impl Facts {
    /// An ordinary command.
    pub const PLAIN: Facts = Facts {
        streams_data_out: false,
        ua_exempt: false,
        may_run_inline: false,
        safe_to_retry: true,
        class: OpClass::Other,
        needs_alua: false,
        standby_ok: false,
        unavailable_ok: false,
    };
    /// READ (6/10/12/16).
    const READ: Facts = Facts {
        may_run_inline: true,
        class: OpClass::Read,
        ..Facts::PLAIN
    };
    /// WRITE, WRITE AND VERIFY.
    const STREAMS: Facts = Facts {
        streams_data_out: true,
        class: OpClass::Write,
        ..Facts::PLAIN
    };
    /// Other commands that write blocks (WRITE SAME, ORWRITE).
    const WRITES: Facts = Facts {
        class: OpClass::Write,
        ..Facts::PLAIN
    };
    /// SYNCHRONIZE CACHE.
    const FLUSH: Facts = Facts {
        class: OpClass::Flush,
        ..Facts::PLAIN
    };
    /// UNMAP.
    const UNMAP: Facts = Facts {
        class: OpClass::Unmap,
        ..Facts::PLAIN
    };
    /// INQUIRY, REPORT LUNS, REQUEST SENSE.
    const UA_EXEMPT: Facts = Facts {
        ua_exempt: true,
        standby_ok: true,
        unavailable_ok: true,
        ..Facts::PLAIN
    };
    /// REPORT and SET TARGET PORT GROUPS.
    const ALUA: Facts = Facts {
        needs_alua: true,
        standby_ok: true,
        unavailable_ok: true,
        ..Facts::PLAIN
    };
    /// REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS: served
    /// by standby and unavailable ports.
    const REPORTS: Facts = Facts {
        standby_ok: true,
        unavailable_ok: true,
        ..Facts::PLAIN
    };
    /// Other commands a standby port serves (MODE, LOG, PERSISTENT
    /// RESERVE, SEND DIAGNOSTIC).
    const STANDBY_OK: Facts = Facts {
        standby_ok: true,
        ..Facts::PLAIN
    };
    /// Read-compare-write commands.
    const ONCE: Facts = Facts {
        safe_to_retry: false,
        class: OpClass::Write,
        ..Facts::PLAIN
    };
}

/// One supported command.
pub(crate) struct Command {
    pub opcode: u8,
    /// SERVICE ACTION (byte 1, bits 4-0) for opcodes that have one.
    pub service_action: Option<u8>,
    pub name: &'static str,
    pub dir: DataDirection,
    /// For data-out commands: the data-out length the CDB implies
    /// ([`data_out`](super::data_out)), checked before the handler runs.
    pub data_out: Option<OutCheck>,
    pub alloc_len: AllocLen,
    /// Whether the backend supports it (thin-only commands).
    pub available: fn(&BackendCaps) -> bool,
    pub handler: Handler,
    /// CDB USAGE DATA for REPORT SUPPORTED OPERATION CODES; its length is
    /// the CDB length.
    pub usage: &'static [u8],
    /// What the LUN and the daemon need to know about it.
    pub facts: Facts,
}

impl Command {
    /// CDB length in bytes.
    pub fn cdb_len(&self) -> usize {
        self.usage.len()
    }

    /// Whether the handler reads `Ctx::data_out` as plain bytes (every
    /// command with data-out except READ/WRITE, which stream from the
    /// caller's source).
    pub fn needs_plain_data_out(&self) -> bool {
        self.dir == DataDirection::Out && !self.facts.streams_data_out
    }

    /// How many of the `sent` data-out bytes the command uses: checked
    /// against the CDB ([`data_out`](super::data_out)); 0 for commands
    /// without data-out. On a write-protected LUN a command that writes
    /// blocks (classes [`OpClass::Write`] and [`OpClass::Unmap`]) is DATA
    /// PROTECT, WRITE PROTECTED before its data-out is looked at, as the
    /// kernel refuses a write to a read-only LUN before it parses the CDB
    /// (libiscsi's ReadOnlySBC sends WRITE SAME with UNMAP and no data).
    pub fn data_out_len(
        &self,
        cdb: &[u8],
        caps: &BackendCaps,
        sent: usize,
    ) -> Result<usize, ScsiError> {
        if caps.read_only && matches!(self.facts.class, OpClass::Write | OpClass::Unmap) {
            return Err(crate::backend::BackendError::ReadOnly.into());
        }
        match self.data_out {
            Some(check) => check(cdb, caps.block_size, sent),
            None => Ok(0),
        }
    }
}

fn always(_: &BackendCaps) -> bool {
    true
}
fn thin(c: &BackendCaps) -> bool {
    c.thin
}
/// All-or-nothing writes: WRITE ATOMIC(16).
fn atomic(c: &BackendCaps) -> bool {
    c.atomic_write
}
/// Deallocated blocks read as zeros: SANITIZE BLOCK ERASE.
fn thin_zeroing(c: &BackendCaps) -> bool {
    c.thin && c.zeroes_after_unmap
}

use AllocLen as A;
use DataDirection::{In, None as NoData, Out};

macro_rules! row {
    ($op:literal, $sa:expr, $name:literal, $dir:expr, $out:expr, $al:expr, $avail:expr, $h:expr, [$($u:literal),*]) => {
        row!($op, $sa, $name, $dir, $out, $al, $avail, $h, [$($u),*], Facts::PLAIN)
    };
    ($op:literal, $sa:expr, $name:literal, $dir:expr, $out:expr, $al:expr, $avail:expr, $h:expr, [$($u:literal),*], $facts:expr) => {
        Command { opcode: $op, service_action: $sa, name: $name, dir: $dir, data_out: $out, alloc_len: $al,
                  available: $avail, handler: $h, usage: &[$($u),*], facts: $facts }
    };
}

/// Every supported command, ordered by opcode and service action.
#[rustfmt::skip]
pub(crate) static COMMANDS: &[Command] = &[
    row!(0x00, None, "TEST UNIT READY", NoData, None, A::None, always, spc::misc::test_unit_ready, [0x00, 0, 0, 0, 0, 0x05]),
    row!(0x03, None, "REQUEST SENSE", In, None, A::U8(4), always, spc::misc::request_sense, [0x03, 0x01, 0, 0, 0xFF, 0x05], Facts::UA_EXEMPT),
    row!(0x08, None, "READ(6)", In, None, A::None, always, sbc::rw::read6, [0x08, 0x1F, 0xFF, 0xFF, 0xFF, 0x05], Facts::READ),
    row!(0x0A, None, "WRITE(6)", Out, Some(o::write6), A::None, always, sbc::rw::write6, [0x0A, 0x1F, 0xFF, 0xFF, 0xFF, 0x05], Facts::STREAMS),
    row!(0x12, None, "INQUIRY", In, None, A::U16(3), always, spc::inquiry::inquiry, [0x12, 0x03, 0xFF, 0xFF, 0xFF, 0x05], Facts::UA_EXEMPT),
    row!(0x15, None, "MODE SELECT(6)", Out, Some(o::mode_select6), A::None, always, spc::mode_select::mode_select6, [0x15, 0x11, 0, 0, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x16, None, "RESERVE(6)", NoData, None, A::None, always, spc::misc::answered_by_kernel, [0x16, 0, 0, 0, 0, 0x05]),
    row!(0x17, None, "RELEASE(6)", NoData, None, A::None, always, spc::misc::answered_by_kernel, [0x17, 0, 0, 0, 0, 0x05]),
    row!(0x1A, None, "MODE SENSE(6)", In, None, A::U8(4), always, spc::mode::mode_sense6, [0x1A, 0x08, 0xFF, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x1B, None, "START STOP UNIT", NoData, None, A::None, always, spc::misc::start_stop_unit, [0x1B, 0x01, 0, 0, 0x01, 0x05]),
    row!(0x1D, None, "SEND DIAGNOSTIC", Out, Some(o::send_diagnostic), A::None, always, spc::misc::send_diagnostic, [0x1D, 0xF7, 0, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x25, None, "READ CAPACITY(10)", In, None, A::None, always, sbc::capacity::read_capacity10,
         [0x25, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x01, 0x05]),
    row!(0x28, None, "READ(10)", In, None, A::None, always, sbc::rw::read10, [0x28, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x05], Facts::READ),
    row!(0x2A, None, "WRITE(10)", Out, Some(o::write10), A::None, always, sbc::rw::write10, [0x2A, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x05], Facts::STREAMS),
    row!(0x2E, None, "WRITE AND VERIFY(10)", Out, Some(o::write10), A::None, always, sbc::rw::write_verify10,
         [0x2E, 0xF2, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x05], Facts::STREAMS),
    row!(0x2F, None, "VERIFY(10)", Out, Some(o::verify10), A::None, always, sbc::verify::verify10, [0x2F, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x05]),
    row!(0x34, None, "PRE-FETCH(10)", NoData, None, A::None, always, sbc::sync::prefetch10, [0x34, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x05]),
    row!(0x35, None, "SYNCHRONIZE CACHE(10)", NoData, None, A::None, always, sbc::sync::sync_cache10,
         [0x35, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x05], Facts::FLUSH),
    row!(0x37, None, "READ DEFECT DATA(10)", In, None, A::U16(7), always, sbc::defects::read_defect_data10,
         [0x37, 0, 0x1F, 0, 0, 0, 0, 0xFF, 0xFF, 0x05]),
    row!(0x41, None, "WRITE SAME(10)", Out, Some(o::write_same10), A::None, always, sbc::write_same::write_same10,
         [0x41, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0x05], Facts::WRITES),
    row!(0x42, None, "UNMAP", Out, Some(o::param_list10), A::None, thin, sbc::unmap::unmap, [0x42, 0x01, 0, 0, 0, 0, 0x3F, 0xFF, 0xFF, 0x05], Facts::UNMAP),
    row!(0x48, Some(0x01), "SANITIZE (OVERWRITE)", Out, Some(o::param_list10), A::None, always, sbc::sanitize::overwrite,
         [0x48, 0xA1, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05]),
    row!(0x48, Some(0x02), "SANITIZE (BLOCK ERASE)", Out, Some(o::param_list10), A::None, thin_zeroing, sbc::sanitize::block_erase,
         [0x48, 0xA2, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05]),
    row!(0x48, Some(0x1F), "SANITIZE (EXIT FAILURE MODE)", Out, Some(o::param_list10), A::None, always, sbc::sanitize::exit_failure_mode,
         [0x48, 0xBF, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05]),
    row!(0x4D, None, "LOG SENSE", In, None, A::U16(7), always, spc::log::log_sense,
         [0x4D, 0, 0xFF, 0xFF, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x55, None, "MODE SELECT(10)", Out, Some(o::param_list10), A::None, always, spc::mode_select::mode_select10,
         [0x55, 0x11, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x56, None, "RESERVE(10)", NoData, None, A::None, always, spc::misc::answered_by_kernel, [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0x05]),
    row!(0x57, None, "RELEASE(10)", NoData, None, A::None, always, spc::misc::answered_by_kernel, [0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0x05]),
    row!(0x5A, None, "MODE SENSE(10)", In, None, A::U16(7), always, spc::mode::mode_sense10, [0x5A, 0x18, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5E, Some(0x00), "PERSISTENT RESERVE IN (READ KEYS)", In, None, A::None, always, spc::misc::answered_by_kernel, [0x5E, 0x00, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5E, Some(0x01), "PERSISTENT RESERVE IN (READ RESERVATION)", In, None, A::None, always, spc::misc::answered_by_kernel, [0x5E, 0x01, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5E, Some(0x02), "PERSISTENT RESERVE IN (REPORT CAPABILITIES)", In, None, A::None, always, spc::misc::answered_by_kernel, [0x5E, 0x02, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5E, Some(0x03), "PERSISTENT RESERVE IN (READ FULL STATUS)", In, None, A::None, always, spc::misc::answered_by_kernel, [0x5E, 0x03, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5F, Some(0x00), "PERSISTENT RESERVE OUT (REGISTER)", Out, None, A::None, always, spc::misc::answered_by_kernel, [0x5F, 0x00, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5F, Some(0x01), "PERSISTENT RESERVE OUT (RESERVE)", Out, None, A::None, always, spc::misc::answered_by_kernel, [0x5F, 0x01, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5F, Some(0x02), "PERSISTENT RESERVE OUT (RELEASE)", Out, None, A::None, always, spc::misc::answered_by_kernel, [0x5F, 0x02, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5F, Some(0x03), "PERSISTENT RESERVE OUT (CLEAR)", Out, None, A::None, always, spc::misc::answered_by_kernel, [0x5F, 0x03, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5F, Some(0x04), "PERSISTENT RESERVE OUT (PREEMPT)", Out, None, A::None, always, spc::misc::answered_by_kernel, [0x5F, 0x04, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5F, Some(0x05), "PERSISTENT RESERVE OUT (PREEMPT AND ABORT)", Out, None, A::None, always, spc::misc::answered_by_kernel, [0x5F, 0x05, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5F, Some(0x06), "PERSISTENT RESERVE OUT (REGISTER AND IGNORE EXISTING KEY)", Out, None, A::None, always, spc::misc::answered_by_kernel, [0x5F, 0x06, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x5F, Some(0x07), "PERSISTENT RESERVE OUT (REGISTER AND MOVE)", Out, None, A::None, always, spc::misc::answered_by_kernel, [0x5F, 0x07, 0xFF, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x05], Facts::STANDBY_OK),
    row!(0x83, Some(0x00), "EXTENDED COPY(LID1)", Out, Some(o::extended_copy), A::None, always, copy::run::extended_copy,
         [0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05], Facts::ONCE),
    row!(0x84, Some(0x00), "RECEIVE COPY RESULTS (COPY STATUS)", In, None, A::U32(10), always, copy::results::copy_status,
         [0x84, 0x00, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05]),
    row!(0x84, Some(0x03), "RECEIVE COPY RESULTS (OPERATING PARAMETERS)", In, None, A::U32(10), always, copy::results::operating_parameters,
         [0x84, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05]),
    row!(0x84, Some(0x04), "RECEIVE COPY RESULTS (FAILED SEGMENT DETAILS)", In, None, A::U32(10), always, copy::results::failed_segment_details,
         [0x84, 0x04, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05]),
    row!(0x88, None, "READ(16)", In, None, A::None, always, sbc::rw::read16,
         [0x88, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05], Facts::READ),
    row!(0x89, None, "COMPARE AND WRITE", Out, Some(o::compare_and_write), A::None, always, sbc::caw::compare_and_write,
         [0x89, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0xFF, 0x3F, 0x05], Facts::ONCE),
    row!(0x8A, None, "WRITE(16)", Out, Some(o::write16), A::None, always, sbc::rw::write16,
         [0x8A, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05], Facts::STREAMS),
    row!(0x8B, None, "ORWRITE(16)", Out, Some(o::write16), A::None, always, sbc::orwrite::orwrite16,
         [0x8B, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05], Facts::WRITES),
    row!(0x8E, None, "WRITE AND VERIFY(16)", Out, Some(o::write16), A::None, always, sbc::rw::write_verify16,
         [0x8E, 0xF2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05], Facts::STREAMS),
    row!(0x8F, None, "VERIFY(16)", Out, Some(o::verify16), A::None, always, sbc::verify::verify16,
         [0x8F, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05]),
    row!(0x90, None, "PRE-FETCH(16)", NoData, None, A::None, always, sbc::sync::prefetch16,
         [0x90, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05]),
    row!(0x91, None, "SYNCHRONIZE CACHE(16)", NoData, None, A::None, always, sbc::sync::sync_cache16,
         [0x91, 0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05], Facts::FLUSH),
    row!(0x93, None, "WRITE SAME(16)", Out, Some(o::write_same16), A::None, always, sbc::write_same::write_same16,
         [0x93, 0xF9, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05], Facts::WRITES),
    row!(0x9C, None, "WRITE ATOMIC(16)", Out, Some(o::write_atomic16), A::None, atomic, sbc::atomic::write_atomic16,
         [0x9C, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05], Facts::STREAMS),
    row!(0x9E, Some(0x10), "READ CAPACITY(16)", In, None, A::U32(10), always, sbc::capacity::read_capacity16,
         [0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05]),
    row!(0x9E, Some(0x12), "GET LBA STATUS", In, None, A::U32(10), thin, sbc::lba_status::get_lba_status,
         [0x9E, 0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05]),
    row!(0xA0, None, "REPORT LUNS", In, None, A::U32(6), always, spc::misc::report_luns,
         [0xA0, 0, 0xFF, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05], Facts::UA_EXEMPT),
    row!(0xA3, Some(0x0A), "REPORT TARGET PORT GROUPS", In, None, A::U32(6), always, spc::tpg::report_target_port_groups,
         [0xA3, 0xEA, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05], Facts::ALUA),
    row!(0xA3, Some(0x0C), "REPORT SUPPORTED OPERATION CODES", In, None, A::U32(6), always, spc::rsoc::report_opcodes,
         [0xA3, 0x0C, 0x87, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05], Facts::REPORTS),
    row!(0xA3, Some(0x0D), "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", In, None, A::U32(6), always, spc::rsoc::report_tmfs,
         [0xA3, 0x0D, 0x80, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05], Facts::REPORTS),
    row!(0xA4, Some(0x0A), "SET TARGET PORT GROUPS", Out, Some(o::maintenance_out), A::None, always, spc::tpg::set_target_port_groups,
         [0xA4, 0x0A, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05], Facts::ALUA),
    row!(0xA8, None, "READ(12)", In, None, A::None, always, sbc::rw::read12,
         [0xA8, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05], Facts::READ),
    row!(0xAA, None, "WRITE(12)", Out, Some(o::write12), A::None, always, sbc::rw::write12,
         [0xAA, 0xF8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05], Facts::STREAMS),
    row!(0xAE, None, "WRITE AND VERIFY(12)", Out, Some(o::write12), A::None, always, sbc::rw::write_verify12,
         [0xAE, 0xF2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05], Facts::STREAMS),
    row!(0xAF, None, "VERIFY(12)", Out, Some(o::verify12), A::None, always, sbc::verify::verify12,
         [0xAF, 0xF6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0x05]),
    row!(0xB7, None, "READ DEFECT DATA(12)", In, None, A::U32(6), always, sbc::defects::read_defect_data12,
         [0xB7, 0x1F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0x05]),
];

/// Whether `opcode` has service actions in the table.
pub(crate) fn has_service_actions(opcode: u8) -> bool {
    COMMANDS
        .iter()
        .any(|c| c.opcode == opcode && c.service_action.is_some())
}

/// Index of each opcode's first row in [`COMMANDS`] (`u8::MAX`: none), so
/// that [`lookup`] is O(1). Built at compile time; relies on the table being
/// ordered by opcode (checked by a test).
static FIRST_ROW: [u8; 256] = first_rows(COMMANDS);

const fn first_rows(rows: &[Command]) -> [u8; 256] {
    assert!(rows.len() < u8::MAX as usize, "row index must fit in a u8");
    let mut t = [u8::MAX; 256];
    let mut i = rows.len();
    while i > 0 {
        i -= 1;
        t[rows[i].opcode as usize] = u8_len(i);
    }
    t
}

/// Finds the row for a CDB: INVALID COMMAND OPERATION CODE for an unknown
/// opcode, INVALID FIELD IN CDB for an unknown service action.
pub(crate) fn lookup(cdb: &[u8]) -> Result<&'static Command, ScsiError> {
    // Errors are built only on the failure path (`ok_or` would build and
    // drop one per command).
    let Some(&opcode) = cdb.first() else {
        return Err(ScsiError::InvalidOpcode);
    };
    let first = match FIRST_ROW.get(usize::from(opcode)) {
        Some(&i) if i != u8::MAX => i,
        _ => return Err(ScsiError::InvalidOpcode),
    };
    let mut rows = COMMANDS
        .get(usize::from(first)..)
        .unwrap_or(&[])
        .iter()
        .take_while(|c| c.opcode == opcode);
    let sa = service_action(cdb);
    rows.find(|c| c.service_action.is_none() || c.service_action == sa)
        .ok_or_else(|| ScsiError::cdb(1, 4))
}

/// The facts of a CDB's command, or `None` for an unsupported command.
pub fn facts(cdb: &[u8]) -> Option<Facts> {
    lookup(cdb).ok().map(|c| c.facts)
}

/// The data direction a CDB implies, or `None` for an unsupported command.
pub fn data_direction(cdb: &[u8]) -> Option<DataDirection> {
    lookup(cdb).ok().map(|c| c.dir)
}

/// Looks up the CDB's row and runs it ([`run`]).
pub(crate) fn dispatch(ctx: &mut Ctx<'_>) -> Result<usize, ScsiError> {
    run(ctx, lookup(ctx.cdb)?)
}

/// The checks every command passes before its handler (availability, the
/// CONTROL byte, the data-out length the CDB implies); returns the data-out
/// bytes it uses.
pub(crate) fn precheck(
    cmd: &'static Command,
    cdb: &[u8],
    caps: &BackendCaps,
    sent: usize,
) -> Result<usize, ScsiError> {
    if !(cmd.available)(caps) {
        // An unsupported service action of a supported opcode is an
        // invalid field, not an invalid opcode.
        return Err(match cmd.service_action {
            Some(_) => ScsiError::cdb(1, 4),
            None => ScsiError::InvalidOpcode,
        });
    }
    let len = cmd.cdb_len();
    let Some(&control) = cdb.get(len - 1) else {
        return Err(ScsiError::InvalidFieldInCdb { byte: 0, bit: None });
    };
    if control & 0x05 != 0 {
        // NACA (ACA is not supported) or the obsolete LINK bit.
        let bit = if control & 0x04 != 0 { 2 } else { 0 };
        return Err(ScsiError::cdb(u16::try_from(len - 1).unwrap_or(0), bit));
    }
    cmd.data_out_len(cdb, caps, sent)
}

/// Validates the CDB against its row `cmd` (from [`lookup`] of `ctx.cdb`),
/// runs the handler and applies the allocation length and data-in capacity
/// once. Returns the data-in length.
pub(crate) fn run(ctx: &mut Ctx<'_>, cmd: &'static Command) -> Result<usize, ScsiError> {
    let sent = match &ctx.direct {
        Some(d) => d.out.len(),
        None => ctx.data_out.len(),
    };
    let used = precheck(cmd, ctx.cdb, &ctx.caps, sent)?;
    if ctx.direct.is_none() {
        ctx.data_out = ctx.data_out.get(..used).unwrap_or_default();
    }
    tracing::trace!(command = cmd.name, "execute");
    let reply = (cmd.handler)(ctx)?;
    let in_len = ctx.data_in_len();
    let cap = in_len.min(cmd.alloc_len.get(ctx.cdb));
    Ok(match reply {
        Reply::None => 0,
        Reply::InPlace(n) => n.min(in_len),
        Reply::Data(v) => {
            let n = v.len().min(cap);
            let src = v.get(..n).unwrap_or_default();
            match ctx.direct.as_mut() {
                Some(d) => d.inb.write_at(0, src).map_err(ScsiError::DataTransfer)?,
                None => {
                    if let Some(dst) = ctx.data_in.get_mut(..n) {
                        dst.copy_from_slice(src);
                    }
                }
            }
            n
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_ordered_and_index_finds_every_row() {
        for w in COMMANDS.windows(2) {
            assert!(
                w[0].opcode <= w[1].opcode,
                "{} before {}",
                w[0].name,
                w[1].name
            );
        }
        for c in COMMANDS {
            let mut cdb = c.usage.to_vec();
            cdb[1] = c.service_action.unwrap_or(0);
            assert_eq!(lookup(&cdb).unwrap().name, c.name);
        }
        assert!(matches!(lookup(&[0xff, 0]), Err(ScsiError::InvalidOpcode)));
        assert!(matches!(lookup(&[]), Err(ScsiError::InvalidOpcode)));
        assert!(lookup(&[0x9e, 0x1f]).is_err());
    }

    #[test]
    fn only_write_commands_stream_their_data_out() {
        for c in COMMANDS {
            let streams = c.facts.streams_data_out;
            let is_write = c.name.starts_with("WRITE(")
                || c.name.starts_with("WRITE AND VERIFY")
                || c.name.starts_with("WRITE ATOMIC");
            assert_eq!(streams, is_write, "{}", c.name);
            let mut cdb = c.usage.to_vec();
            cdb[1] = c.service_action.unwrap_or(0);
            assert_eq!(
                lookup(&cdb).unwrap().needs_plain_data_out(),
                c.dir == Out && !is_write,
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn facts_columns_name_exactly_their_commands() {
        let with = |f: fn(&Facts) -> bool| -> Vec<&str> {
            COMMANDS
                .iter()
                .filter(|c| f(&c.facts))
                .map(|c| c.name)
                .collect()
        };
        assert_eq!(
            with(|f| f.ua_exempt),
            ["REQUEST SENSE", "INQUIRY", "REPORT LUNS"]
        );
        assert_eq!(
            with(|f| f.may_run_inline),
            ["READ(6)", "READ(10)", "READ(16)", "READ(12)"]
        );
        assert_eq!(
            with(|f| f.needs_alua),
            ["REPORT TARGET PORT GROUPS", "SET TARGET PORT GROUPS"]
        );
        assert_eq!(
            with(|f| f.unavailable_ok),
            [
                "REQUEST SENSE",
                "INQUIRY",
                "REPORT LUNS",
                "REPORT TARGET PORT GROUPS",
                "REPORT SUPPORTED OPERATION CODES",
                "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
                "SET TARGET PORT GROUPS"
            ]
        );
        assert!(
            COMMANDS
                .iter()
                .all(|c| !c.facts.unavailable_ok || c.facts.standby_ok),
            "an unavailable port serves a subset of what a standby one does"
        );
        assert_eq!(
            with(|f| f.standby_ok)
                .into_iter()
                .filter(|n| !n.starts_with("PERSISTENT RESERVE"))
                .collect::<Vec<_>>(),
            [
                "REQUEST SENSE",
                "INQUIRY",
                "MODE SELECT(6)",
                "MODE SENSE(6)",
                "SEND DIAGNOSTIC",
                "LOG SENSE",
                "MODE SELECT(10)",
                "MODE SENSE(10)",
                "REPORT LUNS",
                "REPORT TARGET PORT GROUPS",
                "REPORT SUPPORTED OPERATION CODES",
                "REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS",
                "SET TARGET PORT GROUPS"
            ]
        );
        assert_eq!(
            with(|f| !f.safe_to_retry),
            ["EXTENDED COPY(LID1)", "COMPARE AND WRITE"]
        );
        // Inline commands have no data-out and no side effects.
        for c in COMMANDS.iter().filter(|c| c.facts.may_run_inline) {
            assert_eq!(c.dir, In, "{}", c.name);
        }
    }
}
