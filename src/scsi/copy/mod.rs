//! The copy manager: EXTENDED COPY (LID1) and RECEIVE COPY RESULTS
//! (SPC-4 6.4, 6.18), VPD page 8Fh.
//!
//! An EXTENDED COPY names its source and destination logical units by
//! CSCD identification descriptors (E4h) carrying a VPD 83h designator;
//! this copy manager reaches the logical units served by the same
//! process: the one the command was sent to, and those registered in its
//! [`LunRegistry`] (by their NAA designator). Block → block segments (02h)
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
//! copy), `results` (held results, RECEIVE COPY RESULTS), `vpd` (page 8Fh).

pub(crate) mod params;
pub(crate) mod results;
pub(crate) mod run;
pub(crate) mod vpd;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::lun::Lun;

/// CSCD descriptors one EXTENDED COPY may carry.
pub(crate) const MAX_CSCD_DESCRIPTORS: u16 = 8;
/// Segment descriptors one EXTENDED COPY may carry.
pub(crate) const MAX_SEGMENT_DESCRIPTORS: u16 = 16;
/// MAXIMUM DESCRIPTOR LIST LENGTH: room for the most descriptors of both
/// kinds.
pub(crate) const MAX_DESCRIPTOR_LIST_LENGTH: u32 = MAX_CSCD_DESCRIPTORS as u32
    * params::CSCD_LEN as u32
    + MAX_SEGMENT_DESCRIPTORS as u32 * params::SEGMENT_LEN as u32;
/// The longest EXTENDED COPY parameter list accepted (the header and the
/// longest descriptor lists; no inline data).
pub(crate) const MAX_PARAMETER_LIST: u32 = params::HEADER_LEN as u32 + MAX_DESCRIPTOR_LIST_LENGTH;
/// EXTENDED COPY commands one logical unit runs at once.
pub(crate) const MAX_CONCURRENT_COPIES: u8 = 16;
/// The largest piece of data read then written at once when a segment
/// cannot share storage.
pub const PIECE_BYTES: usize = 1 << 20;

/// The logical units one process serves, by NAA designator (VPD 83h): the
/// copy targets EXTENDED COPY can name. Devices register their
/// [`Lun`] when they start ([`LunRegistry::register`]) and leave when they
/// stop; entries hold the LUN weakly, so a LUN dropped without leaving is
/// simply not found.
#[derive(Debug, Default)]
pub struct LunRegistry {
    luns: Mutex<HashMap<[u8; 16], Weak<Lun>>>,
}

impl LunRegistry {
    /// An empty registry.
    pub fn new() -> Arc<LunRegistry> {
        Arc::new(LunRegistry::default())
    }

    /// Makes `lun` reachable under its NAA designator, and lets its
    /// EXTENDED COPY commands reach the other LUNs registered here. A LUN
    /// registered earlier under the same designator (the same volume served
    /// again) is replaced.
    pub fn register(self: &Arc<Self>, lun: &Arc<Lun>) {
        lun.set_copy_registry(Arc::clone(self));
        let naa = lun.config().naa;
        let old = self.map().insert(naa, Arc::downgrade(lun));
        if old.is_some_and(|w| w.strong_count() > 0 && !w.ptr_eq(&Arc::downgrade(lun))) {
            tracing::warn!(naa = ?naa, "two served LUNs share one NAA designator; EXTENDED COPY reaches the newer");
        }
    }

    /// Removes `lun` (if it is the one registered under its designator).
    pub fn unregister(&self, lun: &Arc<Lun>) {
        let naa = lun.config().naa;
        let mut m = self.map();
        if m.get(&naa).is_some_and(|w| w.ptr_eq(&Arc::downgrade(lun))) {
            m.remove(&naa);
        }
    }

    /// The live LUN registered under `naa`.
    pub fn find(&self, naa: &[u8]) -> Option<Arc<Lun>> {
        let key: [u8; 16] = naa.try_into().ok()?;
        self.map().get(&key).and_then(Weak::upgrade)
    }

    /// How many live LUNs are registered.
    pub fn len(&self) -> usize {
        self.map().values().filter(|w| w.strong_count() > 0).count()
    }

    /// Whether no live LUN is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Weak<Lun>>> {
        self.luns.lock().unwrap_or_else(|e| e.into_inner())
    }
}
