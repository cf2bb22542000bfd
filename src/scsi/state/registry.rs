//! [`LunRegistry`]: the logical units one process serves, by NAA
//! designator, for EXTENDED COPY to reach.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::LunState;

/// The logical units one process serves, by NAA designator (VPD 83h): the
/// copy targets EXTENDED COPY can name. Devices register their
/// [`Lun`](crate::scsi::Lun) when they start ([`LunRegistry::register`])
/// and leave when they stop; entries hold the unit weakly, so a LUN
/// dropped without leaving is simply not found.
#[derive(Debug, Default)]
pub struct LunRegistry {
    luns: Mutex<HashMap<[u8; 16], Weak<LunState>>>,
}

impl LunRegistry {
    /// An empty registry.
    pub fn new() -> Arc<LunRegistry> {
        Arc::new(LunRegistry::default())
    }

    /// Makes `unit` reachable under its NAA designator, and lets its
    /// EXTENDED COPY commands reach the other units registered here (the
    /// public side is [`LunRegistry::register`]).
    pub(crate) fn insert(self: &Arc<Self>, unit: &Arc<LunState>) {
        unit.set_copy_registry(Arc::clone(self));
        let naa = unit.config().naa;
        let old = self.map().insert(naa, Arc::downgrade(unit));
        if old.is_some_and(|w| w.strong_count() > 0 && !w.ptr_eq(&Arc::downgrade(unit))) {
            tracing::warn!(naa = ?naa, "two served LUNs share one NAA designator; EXTENDED COPY reaches the newer");
        }
    }

    /// Removes `unit` (if it is the one registered under its designator).
    pub(crate) fn remove(&self, unit: &Arc<LunState>) {
        let naa = unit.config().naa;
        let mut m = self.map();
        if m.get(&naa).is_some_and(|w| w.ptr_eq(&Arc::downgrade(unit))) {
            m.remove(&naa);
        }
    }

    /// The live unit registered under `naa`.
    pub(crate) fn find(&self, naa: &[u8]) -> Option<Arc<LunState>> {
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

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 16], Weak<LunState>>> {
        self.luns.lock().unwrap_or_else(|e| e.into_inner())
    }
}
