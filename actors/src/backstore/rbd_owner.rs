//! Who holds an RBD image's exclusive lock, for implicit ALUA
//! (docs/alua.md): a thread per open image asks librbd every
//! [`OWNER_POLL`] and records the answer in the LUN's
//! [`OwnershipCell`]. librbd moves the lock itself: a write through a
//! daemon that does not hold it asks the holder to release it (or, when
//! the holder is dead, breaks it once the holder's watch expired,
//! blocklisting it), so the cell follows writes, daemon deaths and
//! reopens without any help from here.
//!
//! Which peer holds it: the lock names a librados client, not a target
//! port group, so the owner publishes its group in the image's metadata
//! ([`OWNER_KEY`]: `group=<G>,client=<lock owner>`) when it gets the lock,
//! and the others believe the record only while the client it names is
//! the lock's owner now (a record left by an earlier owner, or a lock
//! taken by a client that publishes nothing, reads as an unknown owner).

use std::sync::Arc;
use std::time::Duration;

use tcmud_core::scsi::{Ownership, OwnershipCell};
use tcmud_rbd::{Image, RbdError};

/// How often the lock is looked at.
pub(super) const OWNER_POLL: Duration = Duration::from_millis(500);

/// The image metadata key holding the lock owner's target port group.
pub(super) const OWNER_KEY: &str = "tcmud_alua_owner";

/// The record the owner publishes: its group and the lock owner's name.
fn record(group: u16, client: &str) -> String {
    format!("group={group},client={client}")
}

/// The group and client of a record, `None` when it is not one.
fn parse_record(v: &str) -> Option<(u16, &str)> {
    let (g, client) = v.strip_prefix("group=")?.split_once(",client=")?;
    Some((g.parse().ok()?, client)).filter(|(_, c)| !c.is_empty())
}

/// What the watcher remembers between polls.
#[derive(Default)]
pub(super) struct Watcher {
    /// The record this daemon published while it holds the lock.
    published: Option<String>,
    /// A failed publication was logged (once per ownership).
    warned: bool,
}

impl Watcher {
    /// Looks at `image`'s lock and records in `cell` who holds it; while
    /// this client does and the cell knows its group, publishes that.
    /// The cluster's answers also say whether it is reachable: a timeout
    /// says no (this port is then unavailable), an answer yes. While it is
    /// marked unreachable the lock's owners are asked even by the owner,
    /// so that an answer can clear the mark.
    pub(super) fn poll(&mut self, image: &Image, cell: &OwnershipCell) {
        let probe = !cell.reachable();
        let (o, reachable) = match self.ownership_of(image, cell.group(), probe) {
            Ok((o, asked)) => (o, asked.then_some(true)),
            Err(e) => (Ownership::Unknown, e.is_timeout().then_some(false)),
        };
        if let Some(r) = reachable {
            if cell.set_reachable(r) {
                tracing::info!(reachable = r,
                    "rbd cluster reachability changed, seen by the lock watcher (ALUA: this port unavailable while unreachable)");
            }
        }
        if cell.set(o) {
            tracing::info!(ownership = ?o, "rbd exclusive lock ownership changed");
        }
    }

    /// The ownership of `image` as this client sees it, and whether the
    /// cluster answered a question for it (`probe`: ask it even when
    /// librbd's local view would do).
    fn ownership_of(
        &mut self,
        image: &Image,
        own_group: Option<u16>,
        probe: bool,
    ) -> Result<(Ownership, bool), RbdError> {
        if image.is_lock_owner()? {
            if probe {
                image.lock_owners()?;
            }
            if let Some(g) = own_group {
                self.publish(image, g);
            }
            return Ok((Ownership::Local, probe));
        }
        (self.published, self.warned) = (None, false);
        let owners = image.lock_owners()?;
        if owners.is_empty() {
            return Ok((Ownership::Unowned, true));
        }
        // Without ALUA (no group of its own) nobody asks which peer it is.
        let group = own_group.and_then(|_| published_group(image, &owners));
        Ok((Ownership::Remote(group), true))
    }

    fn publish(&mut self, image: &Image, group: u16) {
        if self.published.is_some() {
            return; // still the owner since it was published
        }
        let owners = match image.lock_owners() {
            Ok(o) => o,
            Err(e) => return self.warn(&e.to_string()),
        };
        let [me] = owners.as_slice() else {
            return self.warn(&format!("the lock has {} owners", owners.len()));
        };
        let rec = record(group, me);
        match image.metadata_set(OWNER_KEY, &rec) {
            Ok(()) => {
                tracing::debug!(record = %rec, "published this port group as the lock owner");
                self.published = Some(rec);
            }
            Err(e) => self.warn(&e.to_string()),
        }
    }

    fn warn(&mut self, why: &str) {
        if !std::mem::replace(&mut self.warned, true) {
            tracing::warn!(error = why, key = OWNER_KEY,
                "cannot publish this port group as the lock owner: the peers report no group optimized (retried every poll)");
        }
    }
}

/// The group the owner published, when its record names `owners`' one
/// client.
fn published_group(image: &Image, owners: &[String]) -> Option<u16> {
    let v = image.metadata_get(OWNER_KEY).ok()??;
    let (group, client) = parse_record(&v)?;
    matches!(owners, [o] if o == client).then_some(group)
}

/// Starts the watcher: it polls the image `current` returns until that
/// returns `None` (the backend is gone); `Some(None)` skips a poll (the
/// image is being reopened).
pub(super) fn watch(
    name: String,
    cell: Arc<OwnershipCell>,
    current: impl Fn() -> Option<Option<Arc<Image>>> + Send + 'static,
) {
    let spawned = std::thread::Builder::new()
        .name("tcmud-rbd-owner".into())
        .spawn(move || {
            let _span = tracing::info_span!("rbd_owner", image = %name).entered();
            let mut w = Watcher::default();
            while let Some(image) = current() {
                if let Some(image) = image {
                    w.poll(&image, &cell);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_no_record() {
        let r = record(7, "client.4123");
        assert_eq!(r, "group=7,client=client.4123");
        assert_eq!(parse_record(&r), Some((7, "client.4123")));
        for bad in [
            "",
            "group=,client=c",
            "group=70000,client=c",
            "group=1,client=",
            "group=1",
            "client=c,group=1",
            "tcmu_tag=1,rbd_client=c",
        ] {
            assert_eq!(parse_record(bad), None, "{bad:?}");
        }
    }
}
