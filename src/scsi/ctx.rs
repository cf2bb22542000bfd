//! What a command handler sees and returns: [`Ctx`] (the LUN's state, the backend's
//! capabilities, the CDB and the command's buffers) and [`Reply`]. A leaf
//! module: the handlers (`spc`, `sbc`) and the command table depend on it,
//! it depends on neither.

use super::error::ScsiError;
use super::state::LunState;
use crate::backend::{BackendCaps, BlockSink, BlockSource, SourcePrefix};

/// What a handler produced.
pub(crate) enum Reply {
    /// No data-in.
    None,
    /// A complete response; the dispatcher truncates it to the allocation
    /// length and the data-in capacity.
    Data(Vec<u8>),
    /// This many bytes were written straight into `data_in` (READ).
    InPlace(usize),
}

/// Everything a handler sees.
pub(crate) struct Ctx<'a> {
    /// The logical unit's state (not the [`Lun`](super::Lun) itself: a
    /// handler sees what it reads and changes, not the entry points).
    pub state: &'a LunState,
    pub caps: BackendCaps,
    pub cdb: &'a [u8],
    /// Data-out as plain bytes (for [`Lun::execute_io`](super::Lun::execute_io), only for commands
    /// that need it: see [`Command::needs_plain_data_out`]).
    pub data_out: &'a [u8],
    /// Data-in as plain bytes; empty when `direct` is set.
    pub data_in: &'a mut [u8],
    /// The caller's own buffers ([`Lun::execute_io`](super::Lun::execute_io)): READ/WRITE move
    /// data straight between them and the backend, and replies go to
    /// `inb`.
    pub direct: Option<Direct<'a>>,
    /// Only what can finish without waiting: READ fails with
    /// [`ScsiError::WouldBlock`] instead of waiting for the backend.
    pub nowait: bool,
}

/// The buffers of [`Lun::execute_io`](super::Lun::execute_io).
pub(crate) struct Direct<'a> {
    pub out: &'a dyn BlockSource,
    pub inb: &'a mut dyn BlockSink,
}

impl<'a> Ctx<'a> {
    /// The first `bytes` of the data-out, from the caller's source or the
    /// plain bytes (WRITE and WRITE ATOMIC stream them to the backend);
    /// INVALID FIELD IN CDB at the length field `len_byte` when fewer came.
    pub fn data_out_prefix(
        &self,
        bytes: usize,
        len_byte: u16,
    ) -> Result<SourcePrefix<'_>, ScsiError> {
        let src: &dyn BlockSource = match &self.direct {
            Some(d) => d.out,
            None => &self.data_out,
        };
        SourcePrefix::new(src, bytes).ok_or_else(|| ScsiError::cdb(len_byte, 7))
    }

    /// Where data-in goes: the caller's sink or the plain buffer.
    pub fn data_in_len(&self) -> usize {
        self.direct
            .as_ref()
            .map_or(self.data_in.len(), |d| d.inb.len())
    }
}

pub(crate) type Handler = fn(&mut Ctx<'_>) -> Result<Reply, ScsiError>;
