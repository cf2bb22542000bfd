//! Data buffers: validated spans of the data area, and the copies in and
//! out of them, so that nothing above the ring sees an offset.

use super::device::Ring;
use super::error::RingError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    off: usize,
    len: usize,
}

/// An owned, validated list of buffers in the data area (from a command's
/// iovs). Offsets are private: use [`Ring::read_data_out`] and
/// [`Ring::write_data_in`], which refuse spans of a command no longer in
/// flight (the kernel may have unmapped its pages: touching them would
/// SIGBUS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataSpans {
    spans: Vec<Span>,
    total: usize,
    cmd_id: u16,
}

impl DataSpans {
    /// No buffer.
    pub fn empty() -> DataSpans {
        DataSpans::default()
    }

    /// Total bytes of all spans.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True when there is no data.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Number of spans (iovs).
    pub fn span_count(&self) -> usize {
        self.spans.len()
    }

    /// Builds from (offset, len) pairs already checked against the data
    /// area; `None` when the total overflows.
    pub(crate) fn from_checked(cmd_id: u16, pairs: Vec<(usize, usize)>) -> Option<DataSpans> {
        let mut total = 0usize;
        let mut spans = Vec::with_capacity(pairs.len());
        for (off, len) in pairs {
            total = total.checked_add(len)?;
            if len > 0 {
                spans.push(Span { off, len });
            }
        }
        Some(DataSpans {
            spans,
            total,
            cmd_id,
        })
    }
}

impl Ring {
    /// The spans' command must still be in flight: after completion the
    /// kernel may release (and unmap) its data pages.
    fn spans_live(&self, spans: &DataSpans) -> Result<(), RingError> {
        if spans.spans.is_empty() || self.is_in_flight(spans.cmd_id) {
            Ok(())
        } else {
            Err(RingError::NotInFlight(spans.cmd_id))
        }
    }

    /// Checks a span against this ring's data area (spans from another ring
    /// are refused rather than trusted).
    fn span_ok(&self, s: &Span) -> Result<(), RingError> {
        let g = self.geometry();
        match s.off.checked_add(s.len) {
            Some(end) if s.off >= g.data_off && end <= g.data_end => Ok(()),
            _ => Err(RingError::OutOfBounds {
                off: s.off as u64,
                len: s.len as u64,
            }),
        }
    }

    /// Copies the initiator's data out of `spans` into `buf`; returns the
    /// bytes copied (`min(buf.len(), spans.len())`). The command must be in
    /// flight.
    pub fn read_data_out(&self, spans: &DataSpans, buf: &mut [u8]) -> Result<usize, RingError> {
        self.spans_live(spans)?;
        let mut done = 0usize;
        for s in &spans.spans {
            if done == buf.len() {
                break;
            }
            self.span_ok(s)?;
            let n = s.len.min(buf.len() - done);
            self.map().read_into(s.off, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(done)
    }

    /// Copies `buf` into the data-in `spans`; returns the bytes copied
    /// (`min(buf.len(), spans.len())`). The command must be in flight.
    pub fn write_data_in(&self, spans: &DataSpans, buf: &[u8]) -> Result<usize, RingError> {
        self.spans_live(spans)?;
        let mut done = 0usize;
        for s in &spans.spans {
            if done == buf.len() {
                break;
            }
            self.span_ok(s)?;
            let n = s.len.min(buf.len() - done);
            self.map().write_from(s.off, &buf[done..done + n])?;
            done += n;
        }
        Ok(done)
    }
}
