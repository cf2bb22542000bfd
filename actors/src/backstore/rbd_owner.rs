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
    /// The last record believed of another owner (its client, its group):
    /// kept while that client owns the lock and the record cannot be read.
    peer: Option<(String, u16)>,
}

/// What the backend does for the watcher.
pub(super) struct WatchHooks {
    /// The image `Some(Some)`, a reopen in progress `Some(None)` (a poll
    /// skipped), the backend gone `None` (the watcher ends).
    pub current: Box<dyn Fn() -> Option<Option<Arc<Image>>> + Send>,
    /// This client was blocklisted: reopen (the port is unavailable and
    /// refuses I/O, so no command would find out).
    pub blocklisted: Box<dyn Fn() + Send>,
}

impl Watcher {
    /// Looks at `image`'s lock and records in `cell` who holds it; while
    /// this client does and the cell knows its group, publishes that.
    /// The cluster's answers also say whether it is reachable: a timeout
    /// says no (this port is then unavailable), an answer yes. While it is
    /// marked unreachable the lock's owners are asked even by the owner,
    /// so that an answer can clear the mark. Returns whether this client
    /// was found blocklisted.
    pub(super) fn poll(&mut self, image: &Image, cell: &OwnershipCell) -> bool {
        let probe = !cell.reachable();
        let (o, reachable, blocklisted) = match self.ownership_of(image, cell.group(), probe) {
            Ok((o, asked)) => (o, asked.then_some(true), false),
            Err(e) if e.needs_reopen() => (Ownership::Unknown, Some(false), true),
            Err(e) => (Ownership::Unknown, e.is_timeout().then_some(false), false),
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
        blocklisted
    }

    /// This client does not hold the lock, or a poll was skipped (the
    /// image is being reopened, the next handle a new client): whatever
    /// was published names an earlier tenure.
    pub(super) fn forget_published(&mut self) {
        (self.published, self.warned) = (None, false);
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
        self.forget_published();
        let owners = image.lock_owners()?;
        if owners.is_empty() {
            return Ok((Ownership::Unowned, true));
        }
        // Without ALUA (no group of its own) nobody asks which peer it is.
        let group = match own_group {
            Some(_) => self.published_group(image, &owners),
            None => None,
        };
        Ok((Ownership::Remote(group), true))
    }

    /// Publishes this port's group as the lock owner's, unless the record
    /// there is already this client's (read back every poll: the lock may
    /// have gone to a peer and come back between two polls, the peer's
    /// record overwriting this one).
    fn publish(&mut self, image: &Image, group: u16) {
        if let Some(rec) = &self.published {
            match image.metadata_get(OWNER_KEY) {
                Ok(Some(v)) if &v == rec => return,
                Ok(_) => self.published = None, // overwritten: again
                Err(_) => return,               // not known: next poll
            }
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

    /// The group the owner published, when its record names `owners`' one
    /// client; when the record cannot be read, the last one believed of
    /// that same client.
    fn published_group(&mut self, image: &Image, owners: &[String]) -> Option<u16> {
        let [owner] = owners else {
            return None;
        };
        let read = match image.metadata_get(OWNER_KEY) {
            Ok(v) => v,
            Err(_) => {
                return self
                    .peer
                    .as_ref()
                    .filter(|(client, _)| client == owner)
                    .map(|&(_, g)| g)
            }
        };
        self.peer = read
            .as_deref()
            .and_then(parse_record)
            .filter(|(_, client)| client == owner)
            .map(|(g, client)| (client.to_owned(), g));
        self.peer.as_ref().map(|&(_, g)| g)
    }
}

/// Starts the watcher: it polls the image until the backend is gone
/// (`hooks`).
pub(super) fn watch(name: String, cell: Arc<OwnershipCell>, hooks: WatchHooks) {
    let spawned = std::thread::Builder::new()
        .name("tcmud-rbd-owner".into())
        .spawn(move || {
            let _span = tracing::info_span!("rbd_owner", image = %name).entered();
            let mut w = Watcher::default();
            while let Some(image) = (hooks.current)() {
                match image {
                    Some(image) => {
                        if w.poll(&image, &cell) {
                            tracing::warn!(
                                "rbd client blocklisted (seen by the lock watcher); reconnecting"
                            );
                            (hooks.blocklisted)();
                        }
                    }
                    None => w.forget_published(),
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
