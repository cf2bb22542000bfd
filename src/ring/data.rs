//! Data buffers: validated spans of the data area, and the copies in and
//! out of them, so that nothing above the ring sees an offset.

use super::device::Ring;
use super::error::RingError;

/// One buffer: offset from the start of the mapping, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) off: usize,
    pub(super) len: usize,
}

/// Spans kept inline (no allocation per command); more go to the heap.
const INLINE_SPANS: usize = 4;

/// The span list: inline for the usual few iovs (the kernel merges
/// contiguous blocks into one iov), a `Vec` beyond.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SpanList {
    Inline { n: u8, arr: [Span; INLINE_SPANS] },
    Heap(Vec<Span>),
}

impl Default for SpanList {
    fn default() -> SpanList {
        SpanList::Inline {
            n: 0,
            arr: [Span { off: 0, len: 0 }; INLINE_SPANS],
        }
    }
}

impl SpanList {
    fn as_slice(&self) -> &[Span] {
        match self {
            SpanList::Inline { n, arr } => arr.get(..usize::from(*n)).unwrap_or(&[]),
            SpanList::Heap(v) => v,
        }
    }

    fn push(&mut self, s: Span) {
        match self {
            SpanList::Inline { n, arr } => {
                if let Some(slot) = arr.get_mut(usize::from(*n)) {
                    *slot = s;
                    *n += 1;
                } else {
                    let mut v = Vec::with_capacity(2 * INLINE_SPANS);
                    v.extend_from_slice(arr);
                    v.push(s);
                    *self = SpanList::Heap(v);
                }
            }
            SpanList::Heap(v) => v.push(s),
        }
    }
}

/// An owned, validated list of buffers in the data area (from a command's
/// iovs). Offsets are private: use [`Ring::read_data_out`] and
/// [`Ring::write_data_in`], which refuse spans of a command no longer in
/// flight (the kernel may have unmapped its pages: touching them would
/// SIGBUS). Up to four spans are stored inline (no allocation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataSpans {
    spans: SpanList,
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
        self.spans.as_slice().len()
    }

    /// The command the spans belong to.
    pub(super) fn cmd_id(&self) -> u16 {
        self.cmd_id
    }

    /// The spans, in order.
    pub(super) fn as_spans(&self) -> &[Span] {
        self.spans.as_slice()
    }

    /// An empty list for `cmd_id`, to fill with [`DataSpans::push_checked`].
    pub(crate) fn for_cmd(cmd_id: u16) -> DataSpans {
        DataSpans {
            cmd_id,
            ..DataSpans::default()
        }
    }

    /// Appends a span already checked against the data area; `None` when
    /// the total overflows. Empty spans are dropped.
    pub(crate) fn push_checked(&mut self, off: usize, len: usize) -> Option<()> {
        self.total = self.total.checked_add(len)?;
        if len > 0 {
            self.spans.push(Span { off, len });
        }
        Some(())
    }

    /// Builds from (offset, len) pairs already checked against the data
    /// area; `None` when the total overflows.
    #[cfg(test)]
    pub(crate) fn from_checked(cmd_id: u16, pairs: Vec<(usize, usize)>) -> Option<DataSpans> {
        let mut d = DataSpans::for_cmd(cmd_id);
        for (off, len) in pairs {
            d.push_checked(off, len)?;
        }
        Some(d)
    }
}

impl Ring {
    /// The spans' command must still be in flight: after completion the
    /// kernel may release (and unmap) its data pages.
    pub(super) fn spans_live(&self, spans: &DataSpans) -> Result<(), RingError> {
        if spans.spans.as_slice().is_empty() || self.is_in_flight(spans.cmd_id) {
            Ok(())
        } else {
            Err(RingError::NotInFlight(spans.cmd_id))
        }
    }

    /// Checks a span against this ring's data area (spans from another ring
    /// are refused rather than trusted).
    pub(super) fn span_ok(&self, s: &Span) -> Result<(), RingError> {
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
    /// flight. One `memcpy` per span: the kernel leaves an in-flight
    /// command's data pages alone.
    pub fn read_data_out(&self, spans: &DataSpans, buf: &mut [u8]) -> Result<usize, RingError> {
        self.spans_live(spans)?;
        let mut rest = buf;
        let mut done = 0usize;
        for s in spans.spans.as_slice() {
            if rest.is_empty() {
                break;
            }
            self.span_ok(s)?;
            let n = s.len.min(rest.len());
            let (now, later) = rest.split_at_mut(n);
            self.map().copy_out(s.off, now)?;
            rest = later;
            done += n;
        }
        Ok(done)
    }

    /// Zeroes bytes `[from, to)` of `spans` (the buffers of `cmd_id`,
    /// which must be in flight): one `memset` per span touched (a single
    /// byte is one store), nothing when the range is empty. Each span is
    /// checked against the data area before it is written; on an error
    /// the range may be zeroed in part.
    pub(super) fn zero_data(
        &self,
        cmd_id: u16,
        spans: &DataSpans,
        from: usize,
        to: usize,
    ) -> Result<(), RingError> {
        if spans.total > 0 && spans.cmd_id != cmd_id {
            return Err(RingError::Internal("data buffers of another command"));
        }
        let to = to.min(spans.total);
        if from >= to {
            return Ok(());
        }
        self.spans_live(spans)?;
        let mut at = 0usize;
        for s in spans.spans.as_slice() {
            let end = at + s.len;
            let (a, b) = (from.max(at), to.min(end));
            if a < b {
                self.span_ok(s)?;
                let off = s.off + (a - at);
                if b - a == 1 {
                    self.map().write_u8(off, 0)?;
                } else {
                    self.map().fill_data(off, b - a, 0)?;
                }
            }
            if end >= to {
                break;
            }
            at = end;
        }
        Ok(())
    }

    /// Copies `buf` into the data-in `spans`; returns the bytes copied
    /// (`min(buf.len(), spans.len())`). The command must be in flight.
    /// One `memcpy` per span.
    pub fn write_data_in(&self, spans: &DataSpans, buf: &[u8]) -> Result<usize, RingError> {
        self.spans_live(spans)?;
        let mut rest = buf;
        let mut done = 0usize;
        for s in spans.spans.as_slice() {
            if rest.is_empty() {
                break;
            }
            self.span_ok(s)?;
            let n = s.len.min(rest.len());
            let (now, later) = rest.split_at(n);
            self.map().copy_in(s.off, now)?;
            rest = later;
            done += n;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_inline_then_heap() {
        let pairs: Vec<(usize, usize)> = (0..9).map(|i| (i * 100, i)).collect();
        let d = DataSpans::from_checked(3, pairs).unwrap();
        assert_eq!(d.span_count(), 8); // the empty first span is dropped
        assert_eq!(d.len(), (0..9).sum::<usize>());
        assert!(matches!(d.spans, SpanList::Heap(_)));
        let offs: Vec<usize> = d.spans.as_slice().iter().map(|s| s.off).collect();
        assert_eq!(offs, (1..9).map(|i| i * 100).collect::<Vec<_>>());
        let small = DataSpans::from_checked(3, vec![(8, 4), (16, 4)]).unwrap();
        assert!(matches!(small.spans, SpanList::Inline { n: 2, .. }));
        assert!(DataSpans::from_checked(1, vec![(0, usize::MAX), (0, 1)]).is_none());
        assert!(DataSpans::empty().is_empty());
    }
}
