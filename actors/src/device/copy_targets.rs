//! The LUNs of this process that EXTENDED COPY can reach: one registry
//! (NAA designator → LUN) shared by every device. A device joins when it
//! starts and leaves when it stops; the registry holds LUNs weakly, so one
//! dropped any other way is not found either.

use std::sync::{Arc, OnceLock};

use tcmud_core::scsi::{Lun, LunRegistry};

static REGISTRY: OnceLock<Arc<LunRegistry>> = OnceLock::new();

/// The process's registry.
pub fn registry() -> &'static Arc<LunRegistry> {
    REGISTRY.get_or_init(LunRegistry::new)
}

/// Makes `lun` a copy target of the other devices, and them of it.
pub(crate) fn join(lun: &Arc<Lun>) {
    registry().register(lun);
}

/// Removes `lun` (its device stopped).
pub(crate) fn leave(lun: &Arc<Lun>) {
    registry().unregister(lun);
}
