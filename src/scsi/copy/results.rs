//! What the copy manager keeps about EXTENDED COPY commands, and RECEIVE
//! COPY RESULTS (SPC-4 6.18): OPERATING PARAMETERS, COPY STATUS and
//! FAILED SEGMENT DETAILS.
//!
//! SPC-4 keeps copy results per I_T nexus; TCMU does not say which
//! initiator sent a command, so they are kept per logical unit (as unit
//! attentions are). Held: the results of a command with LIST ID USAGE 00b
//! that started copying (one refused while its parameter list was being
//! checked has nothing to report beyond its sense data), until a new
//! EXTENDED COPY names the same list identifier, or, for failed segment
//! details, until they were returned once. At most [`MAX_HELD`] lists are
//! held; the oldest goes first.

use std::collections::VecDeque;

use super::params::ListIdUsage;
use super::{
    MAX_CONCURRENT_COPIES, MAX_CSCD_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH,
    MAX_SEGMENT_DESCRIPTORS,
};
use crate::scsi::cdb::ThirdPartyCopy;
use crate::scsi::ctx::{Ctx, Reply};
use crate::scsi::error::ScsiError;
use crate::scsi::lun::Lun;
use crate::scsi::sense::{status, Sense};

/// Lists whose results are held at once, per logical unit.
pub(crate) const MAX_HELD: usize = 16;

/// The outcome of one EXTENDED COPY that started copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Segments processed (completed, plus the failed one).
    pub segments: u16,
    /// Bytes written to destinations (or made to share storage).
    pub bytes: u64,
    /// The sense data it ended with, when it failed.
    pub failed: Option<Sense>,
}

/// Results held for one list identifier.
#[derive(Debug)]
struct Held {
    list_id: u8,
    outcome: Outcome,
    /// FAILED SEGMENT DETAILS were returned: no longer held.
    details_sent: bool,
}

/// The copy manager's state of one logical unit.
#[derive(Debug, Default)]
pub(crate) struct CopyState {
    held: VecDeque<Held>,
    /// List identifiers of copies running now (LIST ID USAGE 00b/10b).
    running: Vec<u8>,
    /// Copies running now, whatever their usage.
    running_count: usize,
}

/// A running EXTENDED COPY ([`Lun::copy_begin`]); ends with
/// [`CopyRun::finish`] (or on drop, holding nothing).
#[must_use]
pub(crate) struct CopyRun<'a> {
    lun: &'a Lun,
    list_id: Option<u8>,
    hold: bool,
}

impl Lun {
    /// Registers a starting EXTENDED COPY: OPERATION IN PROGRESS when one
    /// with the same list identifier runs, INSUFFICIENT RESOURCES when
    /// [`MAX_CONCURRENT_COPIES`] run. Drops the results held for its list
    /// identifier.
    pub(crate) fn copy_begin(
        &self,
        list_id: u8,
        usage: ListIdUsage,
    ) -> Result<CopyRun<'_>, ScsiError> {
        let mut st = self.copy_state();
        let id = (usage != ListIdUsage::Disabled).then_some(list_id);
        if let Some(id) = id {
            if st.running.contains(&id) {
                return Err(ScsiError::CopyInProgress { resources: false });
            }
        }
        if st.running_count >= usize::from(MAX_CONCURRENT_COPIES) {
            return Err(ScsiError::CopyInProgress { resources: true });
        }
        if let Some(id) = id {
            st.running.push(id);
            st.held.retain(|h| h.list_id != id);
        }
        st.running_count += 1;
        Ok(CopyRun {
            lun: self,
            list_id: id,
            hold: usage == ListIdUsage::Hold,
        })
    }
}

impl CopyRun<'_> {
    /// The copy ended with `outcome`: held for RECEIVE COPY RESULTS when its
    /// LIST ID USAGE asked for it.
    pub fn finish(self, outcome: Outcome) {
        if let (true, Some(id)) = (self.hold, self.list_id) {
            let mut st = self.lun.copy_state();
            if st.held.len() >= MAX_HELD {
                st.held.pop_front();
            }
            st.held.push_back(Held {
                list_id: id,
                outcome,
                details_sent: false,
            });
        }
    }
}

impl Drop for CopyRun<'_> {
    fn drop(&mut self) {
        let mut st = self.lun.copy_state();
        if let Some(id) = self.list_id {
            st.running.retain(|&l| l != id);
        }
        st.running_count = st.running_count.saturating_sub(1);
    }
}

/// RECEIVE COPY RESULTS, OPERATING PARAMETERS (SPC-4 6.18.4).
pub(crate) fn operating_parameters(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    check_cdb(ctx.cdb, false)?;
    let bs = ctx.caps.block_size.max(1);
    let mut d = vec![0u8; 44];
    d[4] = 0x01; // SNLID: LIST ID USAGE 11b supported
    d[8..10].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    d[10..12].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    d[12..16].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    // MAXIMUM SEGMENT LENGTH: what one block → block descriptor can name.
    let max_segment = u32::from(u16::MAX).saturating_mul(bs);
    d[16..20].copy_from_slice(&max_segment.to_be_bytes());
    // MAXIMUM INLINE DATA LENGTH, HELD DATA LIMIT, MAXIMUM STREAM DEVICE
    // TRANSFER SIZE: 0 (no inline data, no data held, no streams).
    d[34..36].copy_from_slice(&u16::from(MAX_CONCURRENT_COPIES).to_be_bytes()); // TOTAL CONCURRENT COPIES
    d[36] = MAX_CONCURRENT_COPIES; // MAXIMUM CONCURRENT COPIES
    d[37] = u8::try_from(bs.trailing_zeros()).unwrap_or(0); // DATA SEGMENT GRANULARITY (log2)
    let implemented = [
        super::params::SEGMENT_BLOCK_TO_BLOCK,
        super::params::CSCD_IDENTIFICATION,
    ];
    d[43] = implemented.len() as u8; // IMPLEMENTED DESCRIPTOR LIST LENGTH
    d.extend_from_slice(&implemented);
    let len = u32::try_from(d.len() - 4).unwrap_or(0);
    d[..4].copy_from_slice(&len.to_be_bytes()); // AVAILABLE DATA
    Ok(Reply::Data(d))
}

/// RECEIVE COPY RESULTS, COPY STATUS (SPC-4 6.18.3): INVALID FIELD IN CDB
/// for a list identifier with nothing held.
pub(crate) fn copy_status(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let id = check_cdb(ctx.cdb, true)?;
    let o = ctx.lun.held_outcome(id, false)?;
    let mut d = vec![0u8; 12];
    d[3] = 8; // AVAILABLE DATA
    d[4] = match o.failed {
        None => 0x01,    // completed, no errors
        Some(_) => 0x02, // completed with errors
    };
    d[5..7].copy_from_slice(&o.segments.to_be_bytes()); // SEGMENTS PROCESSED
    let (units, count) = transfer_count(o.bytes);
    d[7] = units; // TRANSFER COUNT UNITS
    d[8..12].copy_from_slice(&count.to_be_bytes()); // TRANSFER COUNT
    Ok(Reply::Data(d))
}

/// RECEIVE COPY RESULTS, FAILED SEGMENT DETAILS (SPC-4 6.18.5): the
/// status and sense data a failed copy ended with, returned once.
pub(crate) fn failed_segment_details(ctx: &mut Ctx<'_>) -> Result<Reply, ScsiError> {
    let id = check_cdb(ctx.cdb, true)?;
    let o = ctx.lun.held_outcome(id, true)?;
    let sense = o.failed.map(|s| s.to_fixed()).unwrap_or_default();
    let mut d = vec![0u8; 60];
    d[56] = status::CHECK_CONDITION; // COPY COMMAND STATUS
    d[58..60].copy_from_slice(&u16::try_from(sense.len()).unwrap_or(0).to_be_bytes());
    d.extend_from_slice(&sense);
    let len = u32::try_from(d.len() - 4).unwrap_or(0);
    d[..4].copy_from_slice(&len.to_be_bytes()); // AVAILABLE DATA
    Ok(Reply::Data(d))
}

/// The reserved bytes of a RECEIVE COPY RESULTS CDB; the LIST IDENTIFIER
/// when the service action uses one (else it must be 0).
fn check_cdb(cdb: &[u8], uses_list_id: bool) -> Result<u8, ScsiError> {
    let c = ThirdPartyCopy::parse(cdb)?;
    if !uses_list_id && c.list_identifier() != 0 {
        return Err(ScsiError::cdb(2, 7));
    }
    if let Some(b) = c.reserved_byte(3) {
        return Err(ScsiError::cdb(b, 7));
    }
    Ok(c.list_identifier())
}

/// TRANSFER COUNT UNITS and TRANSFER COUNT for `bytes`: the smallest unit
/// (bytes, KiB, MiB, ... ) in which the count fits 32 bits.
fn transfer_count(bytes: u64) -> (u8, u32) {
    let mut v = bytes;
    for units in 0u8..=6 {
        if let Ok(n) = u32::try_from(v) {
            return (units, n);
        }
        v >>= 10;
    }
    (6, u32::MAX)
}

impl Lun {
    /// The outcome held for `list_id` (INVALID FIELD IN CDB at LIST
    /// IDENTIFIER when none is); `failed` asks for failed segment details,
    /// which are then no longer held.
    fn held_outcome(&self, list_id: u8, failed: bool) -> Result<Outcome, ScsiError> {
        let mut st = self.copy_state();
        let h = st
            .held
            .iter_mut()
            .find(|h| {
                h.list_id == list_id && (!failed || (h.outcome.failed.is_some() && !h.details_sent))
            })
            .ok_or_else(|| ScsiError::cdb(2, 7))?;
        h.details_sent |= failed;
        Ok(h.outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::transfer_count;

    #[test]
    fn transfer_count_picks_the_unit_that_fits() {
        assert_eq!(transfer_count(0), (0, 0));
        assert_eq!(transfer_count(u64::from(u32::MAX)), (0, u32::MAX));
        assert_eq!(transfer_count(1 << 32), (1, 1 << 22));
        assert_eq!(transfer_count(u64::MAX), (4, (1 << 24) - 1));
    }
}
