//! SPC-4 primary commands: INQUIRY and VPD pages, MODE SENSE/SELECT,
//! REQUEST SENSE, LOG SENSE, REPORT SUPPORTED OPERATION CODES, REPORT
//! TARGET PORT GROUPS and small commands.

pub(crate) mod inquiry;
pub(crate) mod log;
pub(crate) mod misc;
pub(crate) mod mode;
pub(crate) mod mode_select;
pub(crate) mod rsoc;
pub(crate) mod tpg;
pub(crate) mod vpd;

/// `s` as a fixed-width, space-padded ASCII field (non-printable characters
/// become `?`).
pub(crate) fn ascii_field(s: &str, width: usize) -> Vec<u8> {
    let mut v: Vec<u8> = s
        .bytes()
        .map(|b| if (0x20..0x7F).contains(&b) { b } else { b'?' })
        .take(width)
        .collect();
    v.resize(width, b' ');
    v
}
