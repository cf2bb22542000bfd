//! Saving the write-cache setting an initiator chose with MODE SELECT to
//! configfs (`attrib/emulate_write_cache`), outside the SCSI command.
//!
//! With netlink replies on, that configfs write does not return before the
//! kernel got the supervisor's answer to the RECONFIG it sends; the
//! supervisor may itself be waiting on this device (draining it for a
//! REMOVED), and the drain waits for the command. So the command only records
//! the value; a saver thread (one at a time per device, started on demand)
//! writes the latest value, and nothing in the device waits for it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::shared::lock;

#[derive(Debug, Default)]
struct State {
    /// The latest value chosen and not yet being written.
    pending: Option<bool>,
    /// A saver thread is running (writing, or about to look at `pending`).
    running: bool,
}

/// Writes a device's chosen write-cache setting to configfs in the background.
#[derive(Debug)]
pub(crate) struct WriteCacheSaver {
    dir: PathBuf,
    span: tracing::Span,
    state: Mutex<State>,
}

impl WriteCacheSaver {
    /// A saver for the configfs device directory `dir`.
    pub fn new(dir: PathBuf, span: tracing::Span) -> Arc<WriteCacheSaver> {
        Arc::new(WriteCacheSaver {
            dir,
            span,
            state: Mutex::new(State::default()),
        })
    }

    /// Queues `on` to be written; returns at once. Values chosen in a row are
    /// written in order, the latest last (intermediate ones may be skipped).
    pub fn save(self: &Arc<Self>, on: bool) {
        let mut s = lock(&self.state);
        s.pending = Some(on);
        if s.running {
            return;
        }
        s.running = true;
        drop(s);
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("tcmud-wce-save".into())
            .spawn(move || me.run());
        if let Err(e) = spawned {
            let mut s = lock(&self.state);
            s.running = false;
            s.pending = None;
            tracing::error!(parent: &self.span, write_cache = on, error = %e,
                "cannot start the write-cache saver; a daemon restart will revert the setting");
        }
    }

    /// True while a chosen value is queued or being written: a RECONFIG
    /// WRITECACHE arriving now is the kernel's echo of our own write (or of a
    /// value already superseded), not a new setting from the administrator.
    pub fn busy(&self) -> bool {
        let s = lock(&self.state);
        s.running || s.pending.is_some()
    }

    fn run(&self) {
        loop {
            let on = {
                let mut s = lock(&self.state);
                match s.pending.take() {
                    Some(on) => on,
                    None => {
                        s.running = false;
                        return;
                    }
                }
            };
            match super::store_configfs_write_cache(&self.dir, on) {
                Ok(()) => tracing::info!(parent: &self.span, write_cache = on,
                    "write cache set by MODE SELECT, saved in configfs"),
                Err(e) => tracing::error!(parent: &self.span, write_cache = on, error = %e,
                    "cannot save the write-cache setting in configfs; a daemon restart will revert it"),
            }
        }
    }
}
