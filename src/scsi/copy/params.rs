//! The EXTENDED COPY (LID1) parameter list (SPC-4 6.4): header, CSCD
//! descriptors and segment descriptors, checked whole before any data
//! moves. Only what this copy manager supports parses: identification
//! CSCD descriptors (E4h) of block devices and block → block segment
//! descriptors (02h); everything else is refused with the sense SPC-4
//! names for it.

use super::{MAX_CSCD_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH, MAX_SEGMENT_DESCRIPTORS};
use crate::scsi::error::ScsiError;

/// Parameter list header length.
pub(crate) const HEADER_LEN: usize = 16;
/// Length of a CSCD descriptor (the E0h-E9h family).
pub(crate) const CSCD_LEN: usize = 32;
/// Length of a block → block segment descriptor.
pub(crate) const SEGMENT_LEN: usize = 28;
/// CSCD descriptor type: identification descriptor.
pub(crate) const CSCD_IDENTIFICATION: u8 = 0xE4;
/// Segment descriptor type: block device to block device.
pub(crate) const SEGMENT_BLOCK_TO_BLOCK: u8 = 0x02;

/// LIST ID USAGE (header byte 1, bits 4-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListIdUsage {
    /// 00b: hold the copy results for RECEIVE COPY RESULTS.
    Hold,
    /// 10b: results need not be held.
    Discard,
    /// 11b: the list identifier is not used (it must be 0).
    Disabled,
}

/// A CSCD identification descriptor naming a logical unit by a VPD 83h
/// designator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cscd {
    /// CODE SET, ASSOCIATION and DESIGNATOR TYPE of the designator.
    pub code_set: u8,
    /// ASSOCIATION (0: the logical unit).
    pub association: u8,
    /// DESIGNATOR TYPE (3: NAA).
    pub designator_type: u8,
    /// The designator's bytes.
    pub designator: Vec<u8>,
    /// PERIPHERAL DEVICE TYPE (0: direct access block device).
    pub device_type: u8,
    /// DISK BLOCK LENGTH of the device-type specific parameters.
    pub block_length: u32,
    /// Byte of the parameter list where the descriptor starts.
    pub at: usize,
}

/// A block → block segment descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// SOURCE CSCD DESCRIPTOR ID (an index into the CSCD list).
    pub source: u16,
    /// DESTINATION CSCD DESCRIPTOR ID.
    pub destination: u16,
    /// BLOCK DEVICE NUMBER OF BLOCKS.
    pub blocks: u16,
    /// SOURCE BLOCK DEVICE LOGICAL BLOCK ADDRESS.
    pub source_lba: u64,
    /// DESTINATION BLOCK DEVICE LOGICAL BLOCK ADDRESS.
    pub destination_lba: u64,
}

/// A parsed parameter list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyList {
    /// LIST IDENTIFIER.
    pub list_id: u8,
    /// LIST ID USAGE.
    pub usage: ListIdUsage,
    /// The CSCD descriptors, in order (segment descriptors index them).
    pub cscds: Vec<Cscd>,
    /// The segment descriptors, processed in order.
    pub segments: Vec<Segment>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}
fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}
fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_be_bytes(a)
    })
}

/// LIST IDENTIFIER and LIST ID USAGE of a parameter list, checked (the
/// rest of the header is checked by [`parse`]).
pub(crate) fn header(list: &[u8]) -> Result<(u8, ListIdUsage), ScsiError> {
    if list.len() < HEADER_LEN {
        return Err(ScsiError::ParameterListLength);
    }
    let list_id = list[0];
    let flags = list[1];
    if flags & 0x20 != 0 {
        // STR: sequential striped: no meaning for block devices here.
        return Err(ScsiError::InvalidFieldInParameterList {
            byte: 1,
            bit: Some(5),
        });
    }
    let usage = match (flags >> 3) & 0x03 {
        0 => ListIdUsage::Hold,
        2 => ListIdUsage::Discard,
        3 if list_id == 0 => ListIdUsage::Disabled,
        3 => return Err(ScsiError::param(0)),
        _ => {
            return Err(ScsiError::InvalidFieldInParameterList {
                byte: 1,
                bit: Some(4),
            })
        }
    };
    Ok((list_id, usage))
}

/// Parses a non-empty parameter list. Errors in the order SPC-4 and
/// libiscsi's `SCSI.ExtendedCopy` expect them: a list shorter than its
/// header names, or descriptor lists longer than MAXIMUM DESCRIPTOR LIST
/// LENGTH, is PARAMETER LIST LENGTH ERROR; then the header's fields; then
/// too many descriptors; then each descriptor's type and fields.
pub(crate) fn parse(list: &[u8]) -> Result<CopyList, ScsiError> {
    if list.len() < HEADER_LEN {
        return Err(ScsiError::ParameterListLength);
    }
    let cscd_len = usize::from(be16(list, 2));
    let seg_len = usize::try_from(be32(list, 8)).unwrap_or(usize::MAX);
    let inline_len = be32(list, 12);
    let descriptors = cscd_len.saturating_add(seg_len);
    let max_list = usize::try_from(MAX_DESCRIPTOR_LIST_LENGTH).unwrap_or(usize::MAX);
    if descriptors > max_list {
        return Err(ScsiError::ParameterListLength);
    }
    let needed = HEADER_LEN
        .saturating_add(descriptors)
        .saturating_add(usize::try_from(inline_len).unwrap_or(usize::MAX));
    if list.len() < needed {
        return Err(ScsiError::ParameterListLength);
    }
    let (list_id, usage) = header(list)?;
    if let Some(i) = (4..8).find(|&i| list[i] != 0) {
        return Err(ScsiError::param(i));
    }
    if inline_len != 0 {
        // MAXIMUM INLINE DATA LENGTH is 0: no segment type used takes any.
        return Err(ScsiError::param(12));
    }
    if cscd_len % CSCD_LEN != 0 {
        return Err(ScsiError::param(2));
    }
    if cscd_len / CSCD_LEN > usize::from(MAX_CSCD_DESCRIPTORS) {
        return Err(ScsiError::TooManyDescriptors { segments: false });
    }
    let cscd_end = HEADER_LEN + cscd_len;
    let seg_end = cscd_end + seg_len;
    let segments = segment_offsets(list, cscd_end, seg_end)?;
    if segments.len() > usize::from(MAX_SEGMENT_DESCRIPTORS) {
        return Err(ScsiError::TooManyDescriptors { segments: true });
    }
    let cscds = (HEADER_LEN..cscd_end)
        .step_by(CSCD_LEN)
        .map(|at| cscd(list, at))
        .collect::<Result<Vec<_>, _>>()?;
    let segments = segments
        .into_iter()
        .map(|at| segment(list, at))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CopyList {
        list_id,
        usage,
        cscds,
        segments,
    })
}

/// Where each segment descriptor of `list[from..end]` starts: walked by
/// their DESCRIPTOR LENGTH fields, at most one more than the limit (enough
/// to say there are too many), every one of a supported type.
fn segment_offsets(list: &[u8], from: usize, end: usize) -> Result<Vec<usize>, ScsiError> {
    let mut out = Vec::new();
    let mut at = from;
    while at < end && out.len() <= usize::from(MAX_SEGMENT_DESCRIPTORS) {
        let kind = list.get(at).copied().unwrap_or(0);
        if kind != SEGMENT_BLOCK_TO_BLOCK {
            return Err(ScsiError::UnsupportedDescriptorType {
                segment: true,
                byte: u16::try_from(at).unwrap_or(u16::MAX),
            });
        }
        if end - at < 4 {
            return Err(ScsiError::ParameterListLength);
        }
        let len = 4 + usize::from(be16(list, at + 2));
        if len != SEGMENT_LEN {
            return Err(ScsiError::param(at + 2));
        }
        if end - at < len {
            return Err(ScsiError::ParameterListLength);
        }
        out.push(at);
        at += len;
    }
    Ok(out)
}

/// The CSCD descriptor at `at`: an identification descriptor of a block
/// device.
fn cscd(list: &[u8], at: usize) -> Result<Cscd, ScsiError> {
    let d = list
        .get(at..at + CSCD_LEN)
        .ok_or(ScsiError::ParameterListLength)?;
    if d[0] != CSCD_IDENTIFICATION {
        return Err(ScsiError::UnsupportedDescriptorType {
            segment: false,
            byte: u16::try_from(at).unwrap_or(u16::MAX),
        });
    }
    // Byte 1: LU ID TYPE (bits 7-6, ignored by SPC-4), NUL (bit 5,
    // obsolete), PERIPHERAL DEVICE TYPE (bits 4-0). Bytes 2-3: RELATIVE
    // INITIATOR PORT IDENTIFIER (the copy manager uses its own path).
    let designator_len = usize::from(d[7]);
    if designator_len > 20 {
        return Err(ScsiError::param(at + 7));
    }
    if d[28] & !0x04 != 0 {
        // Only PAD (bit 2) is defined in byte 28 of the block device
        // parameters; it only matters for stream devices.
        return Err(ScsiError::param(at + 28));
    }
    Ok(Cscd {
        code_set: d[4] & 0x0F,
        association: (d[5] >> 4) & 0x03,
        designator_type: d[5] & 0x0F,
        designator: d[8..8 + designator_len].to_vec(),
        device_type: d[1] & 0x1F,
        block_length: u32::from_be_bytes([0, d[29], d[30], d[31]]),
        at,
    })
}

/// The block → block segment descriptor at `at` (type and length checked).
fn segment(list: &[u8], at: usize) -> Result<Segment, ScsiError> {
    let d = list
        .get(at..at + SEGMENT_LEN)
        .ok_or(ScsiError::ParameterListLength)?;
    // Byte 1: DC (bit 1: NUMBER OF BLOCKS in destination blocks) and CAT
    // (bit 0: residue handling); both block sizes must match the
    // descriptors' (checked when the targets are resolved), so neither
    // changes what is copied.
    if d[1] & !0x03 != 0 {
        return Err(ScsiError::param(at + 1));
    }
    if d[8] != 0 || d[9] != 0 {
        return Err(ScsiError::param(at + 8));
    }
    Ok(Segment {
        source: be16(d, 4),
        destination: be16(d, 6),
        blocks: be16(d, 10),
        source_lba: be64(d, 12),
        destination_lba: be64(d, 20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A list of one NAA CSCD and one segment of `blocks` blocks from LBA
    /// 0 to LBA 100, list id 7, LIST ID USAGE 00b.
    fn list(blocks: u16) -> Vec<u8> {
        let mut l = vec![0u8; HEADER_LEN];
        l[0] = 7;
        l[3] = 32; // CSCD DESCRIPTOR LIST LENGTH
        l[11] = 28; // SEGMENT DESCRIPTOR LIST LENGTH
        let mut c = vec![0u8; 32];
        c[0] = 0xE4;
        c[4] = 0x01; // binary
        c[5] = 0x03; // LU, NAA
        c[7] = 16;
        c[8] = 0x60;
        c[30] = 0x02; // 512-byte blocks
        l.extend(c);
        let mut s = vec![0u8; 28];
        s[0] = 0x02;
        s[3] = 0x18;
        s[10..12].copy_from_slice(&blocks.to_be_bytes());
        s[27] = 100;
        l.extend(s);
        l
    }

    #[test]
    fn parses_one_cscd_and_one_segment() {
        let p = parse(&list(8)).unwrap();
        assert_eq!(p.list_id, 7);
        assert_eq!(p.usage, ListIdUsage::Hold);
        assert_eq!(p.cscds.len(), 1);
        assert_eq!(p.cscds[0].designator_type, 3);
        assert_eq!(p.cscds[0].designator.len(), 16);
        assert_eq!(p.cscds[0].designator[0], 0x60);
        assert_eq!(p.cscds[0].block_length, 512);
        assert_eq!(
            p.segments,
            [Segment {
                source: 0,
                destination: 0,
                blocks: 8,
                source_lba: 0,
                destination_lba: 100
            }]
        );
    }

    fn sense_of(r: Result<CopyList, ScsiError>) -> (u8, u8, u8) {
        let s = r.unwrap_err().to_sense();
        (s.key as u8, s.asc, s.ascq)
    }

    #[test]
    fn hostile_lists_get_their_sense() {
        let good = list(8);
        // Truncated anywhere: PARAMETER LIST LENGTH ERROR.
        for n in [1, 15, 16, 47, 48 + 27] {
            assert_eq!(sense_of(parse(&good[..n])), (5, 0x1A, 0), "len {n}");
        }
        // Descriptor lists longer than the maximum, whatever is sent.
        let mut l = good.clone();
        l[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(sense_of(parse(&l)), (5, 0x1A, 0));
        // Unsupported CSCD and segment types.
        let mut l = good.clone();
        l[16] = 0xE0;
        assert_eq!(sense_of(parse(&l)), (5, 0x26, 0x07));
        let mut l = good.clone();
        l[48] = 0x03;
        assert_eq!(sense_of(parse(&l)), (5, 0x26, 0x09));
        // Wrong segment descriptor length, reserved bytes, STR, inline data,
        // LIST ID USAGE 01b, 11b with a list id.
        for (at, v) in [
            (51, 0x14),
            (56, 1),
            (1, 0x20),
            (15, 1),
            (1, 0x08),
            (1, 0x18),
            (5, 1),
        ] {
            let mut l = good.clone();
            l[at] = v;
            if at == 15 {
                l.push(0); // the inline byte it names
            }
            assert_eq!(sense_of(parse(&l)).1, 0x26, "byte {at} = {v:#x}");
        }
        // A CSCD list that is not whole descriptors.
        let mut l = good.clone();
        l[3] = 33;
        l.push(0);
        assert_eq!(sense_of(parse(&l)).1, 0x26);
        // A designator longer than its field.
        let mut l = good.clone();
        l[16 + 7] = 21;
        assert_eq!(sense_of(parse(&l)).1, 0x26);
    }

    #[test]
    fn too_many_descriptors() {
        let one = list(8);
        let (cscd, seg) = (&one[16..48], &one[48..76]);
        let mut l = one[..16].to_vec();
        let n = usize::from(MAX_CSCD_DESCRIPTORS) + 1;
        l[2..4].copy_from_slice(&u16::try_from(n * 32).unwrap().to_be_bytes());
        (0..n).for_each(|_| l.extend_from_slice(cscd));
        l.extend_from_slice(seg);
        assert_eq!(sense_of(parse(&l)), (5, 0x26, 0x06));
        let mut l = one[..16].to_vec();
        let n = usize::from(MAX_SEGMENT_DESCRIPTORS) + 1;
        l[8..12].copy_from_slice(&u32::try_from(n * 28).unwrap().to_be_bytes());
        l.extend_from_slice(cscd);
        (0..n).for_each(|_| l.extend_from_slice(seg));
        assert_eq!(sense_of(parse(&l)), (5, 0x26, 0x08));
    }
}
