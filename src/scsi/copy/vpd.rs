//! VPD page 8Fh, third-party copy (SPC-4 7.8.17), for the LID1 copy
//! manager: the commands it supports, its parameter limits and the
//! descriptor types it implements.

use super::params::{CSCD_IDENTIFICATION, SEGMENT_BLOCK_TO_BLOCK};
use super::{MAX_CSCD_DESCRIPTORS, MAX_DESCRIPTOR_LIST_LENGTH, MAX_SEGMENT_DESCRIPTORS};
use crate::scsi::fixed_len::u8_len;

/// The page's third-party copy descriptors (after the 4-byte page header).
pub(crate) fn third_party_copy() -> Vec<u8> {
    let mut d = Vec::new();
    // Supported Commands (0001h): EXTENDED COPY (LID1) and RECEIVE COPY
    // RESULTS' COPY STATUS, OPERATING PARAMETERS, FAILED SEGMENT DETAILS.
    let commands = [0x83, 1, 0x00, 0x84, 3, 0x00, 0x03, 0x04];
    let mut body = vec![u8_len(commands.len())];
    body.extend_from_slice(&commands);
    descriptor(&mut d, 0x0001, body);
    // Parameter Data (0004h): the limits of an EXTENDED COPY (LID1)
    // parameter list.
    let mut body = vec![0u8; 28];
    body[4..6].copy_from_slice(&MAX_CSCD_DESCRIPTORS.to_be_bytes());
    body[6..8].copy_from_slice(&MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    body[8..12].copy_from_slice(&MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    // MAXIMUM INLINE DATA LENGTH (body 12-15): 0.
    descriptor(&mut d, 0x0004, body);
    // Supported Descriptors (0008h): the segment and CSCD descriptor types.
    let types = [SEGMENT_BLOCK_TO_BLOCK, CSCD_IDENTIFICATION];
    let mut body = vec![u8_len(types.len())];
    body.extend_from_slice(&types);
    descriptor(&mut d, 0x0008, body);
    d
}

/// Appends one descriptor: type, length, `body` padded to a multiple of 4.
fn descriptor(out: &mut Vec<u8>, kind: u16, mut body: Vec<u8>) {
    body.resize(body.len().div_ceil(4) * 4, 0);
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&u16::try_from(body.len()).unwrap_or(0).to_be_bytes());
    out.extend(body);
}

#[cfg(test)]
mod tests {
    #[test]
    fn descriptors_are_whole_and_padded() {
        let d = super::third_party_copy();
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < d.len() {
            let kind = u16::from_be_bytes([d[at], d[at + 1]]);
            let len = usize::from(u16::from_be_bytes([d[at + 2], d[at + 3]]));
            assert_eq!(len % 4, 0);
            kinds.push(kind);
            at += 4 + len;
        }
        assert_eq!(at, d.len());
        assert_eq!(kinds, [0x0001, 0x0004, 0x0008]);
        // Supported commands: 83h/00h, 84h/00h,03h,04h.
        assert_eq!(d[4..13], [8, 0x83, 1, 0, 0x84, 3, 0, 3, 4]);
    }
}
