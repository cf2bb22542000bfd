//! The copy manager: EXTENDED COPY (LID1) and RECEIVE COPY RESULTS
//! (SPC-4 6.4, 6.18), VPD page 8Fh.
//!
//! An EXTENDED COPY names its source and destination logical units by
//! CSCD identification descriptors (E4h) carrying a VPD 83h designator;
//! this copy manager reaches the logical units served by the same
//! process: the one the command was sent to, and those registered in its
//! [`LunRegistry`](crate::scsi::LunRegistry) (by their NAA designator). Block → block segments (02h)
//! are copied in order; each is checked (CSCD indexes, block sizes,
//! ranges, write protection) before the first byte moves.
//!
//! A segment whose destination backend can share the source's storage
//! ([`BlockBackend::share_blocks`](crate::backend::BlockBackend::share_blocks):
//! two volumes of one thin pool, whole chunks) takes no data I/O: the
//! destination's chunks map to the source's, with reference counts and
//! copy-on-write on the next write to either. The rest (unaligned heads and
//! tails, other backends) is read and written in pieces of at most
//! [`PIECE_BYTES`], on the thread running the command.
//!
//! Layout: `params` (the parameter list), `run` (the command and the
//! copy), `held` (running copies and held results of one unit), `results`
//! (RECEIVE COPY RESULTS), `vpd` (page 8Fh).

pub(crate) mod held;
pub(crate) mod params;
pub(crate) mod results;
pub(crate) mod run;
pub(crate) mod vpd;

use super::fixed_len::u32_len;

/// CSCD descriptors one EXTENDED COPY may carry.
pub(crate) const MAX_CSCD_DESCRIPTORS: u16 = 8;
/// Segment descriptors one EXTENDED COPY may carry.
pub(crate) const MAX_SEGMENT_DESCRIPTORS: u16 = 16;
/// MAXIMUM DESCRIPTOR LIST LENGTH: room for the most descriptors of both
/// kinds.
pub(crate) const MAX_DESCRIPTOR_LIST_LENGTH: u32 = MAX_CSCD_DESCRIPTORS as u32
    * u32_len(params::CSCD_LEN)
    + MAX_SEGMENT_DESCRIPTORS as u32 * u32_len(params::SEGMENT_LEN);
/// The longest EXTENDED COPY parameter list accepted (the header and the
/// longest descriptor lists; no inline data).
pub(crate) const MAX_PARAMETER_LIST: u32 = u32_len(params::HEADER_LEN) + MAX_DESCRIPTOR_LIST_LENGTH;
/// EXTENDED COPY commands one logical unit runs at once.
pub(crate) const MAX_CONCURRENT_COPIES: u8 = 16;
/// The largest piece of data read then written at once when a segment
/// cannot share storage.
pub const PIECE_BYTES: usize = 1 << 20;
