//! Who holds an RBD image's exclusive lock, for implicit ALUA
//! (docs/alua.md): a thread per open image asks librbd every
//! [`OWNER_POLL`] and records the answer in the LUN's
//! [`OwnershipCell`]. librbd moves the lock itself: a write through a
//! daemon that does not hold it asks the holder to release it (or, when
//! the holder is dead, breaks it once the holder's watch expired,
//! blocklisting it), so the cell follows writes, daemon deaths and
//! reopens without any help from here.

use std::sync::Arc;
use std::time::Duration;

use tcmud_core::scsi::{Ownership, OwnershipCell};
use tcmud_rbd::Image;

/// How often the lock is looked at.
pub(super) const OWNER_POLL: Duration = Duration::from_millis(500);

/// The ownership of `image` as this client sees it.
pub(super) fn ownership_of(image: &Image) -> Ownership {
    match image.is_lock_owner() {
        Ok(true) => Ownership::Local,
        Ok(false) => match image.lock_owners() {
            Ok(owners) if owners.is_empty() => Ownership::Unowned,
            Ok(_) => Ownership::Remote,
            Err(_) => Ownership::Unknown,
        },
        Err(_) => Ownership::Unknown,
    }
}

/// Starts the watcher: it polls the image `current` returns until that
/// returns `None` (the backend is gone).
pub(super) fn watch(
    name: String,
    cell: Arc<OwnershipCell>,
    current: impl Fn() -> Option<Arc<Image>> + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("tcmud-rbd-owner".into())
        .spawn(move || {
            while let Some(image) = current() {
                let o = ownership_of(&image);
                drop(image);
                if cell.set(o) {
                    tracing::info!(image = %name, ownership = ?o, "rbd exclusive lock ownership changed");
                }
                // A poll period, not a wait for an event: librbd offers no
                // notification of lock changes in its C API.
                std::thread::sleep(OWNER_POLL);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the rbd lock watcher: ALUA states stay unknown");
    }
}
