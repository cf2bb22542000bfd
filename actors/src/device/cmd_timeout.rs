//! The kernel's command timeout (configfs `attrib/cmd_time_out`, seconds; 0
//! disables it). When it expires for a command in the ring, the kernel
//! completes the command to the initiator with CHECK CONDITION, marks it
//! expired and leaves its ring entry: a later completion from us only frees
//! the entry and its data area (`tcmu_handle_completion` skips an expired
//! command). Executing such a command is wrong: the initiator was told it
//! failed and may have retried it or written the blocks since, so a late
//! WRITE would put old data over new.
//!
//! The ring does not carry the time a command was queued. What the device
//! knows is when it last looked at the ring without seeing the command: the
//! kernel queued it after that. A command is taken as timed out when that
//! moment is `cmd_time_out` or more ago; it is then completed with ABORTED
//! COMMAND / COMMAND TIMEOUT BEFORE PROCESSING without being executed, and
//! logged and counted. Normally the device looks at the ring at every kick,
//! and the idle watch ([`super::idle_watch`]) looks at every device's ring
//! at least four times per `cmd_time_out` (once a second with the default),
//! so the bound is tight; after a stall (the
//! daemon stopped or starved) every command queued during it counts as
//! possibly expired, which costs an initiator retry, never a stale write.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The kernel's default `cmd_time_out`.
pub(crate) const KERNEL_DEFAULT: Duration = Duration::from_secs(30);

/// How often the attribute is read again besides RECONFIG, when commands
/// come: the kernel sends no event when it changes (it may change until the
/// device is exported, after the daemon opened it).
pub(crate) const REREAD_EVERY: Duration = Duration::from_secs(2);

/// A device's command timeout as last read from configfs.
#[derive(Debug)]
pub(crate) struct CmdTimeout {
    /// Milliseconds; `u64::MAX`: never read yet; 0: no timeout.
    millis: AtomicU64,
    /// When it was last read.
    read_at: std::sync::Mutex<Option<Instant>>,
    /// No command came since the device was opened: the first ones read
    /// the attribute again whenever it was last read (the kernel takes
    /// changes only until the device is exported, i.e. before them).
    before_first_command: AtomicBool,
}

impl CmdTimeout {
    /// Reads `attrib/cmd_time_out` of `configfs_dir` (no directory: the
    /// simulator, which never times commands out).
    pub fn read(configfs_dir: Option<&Path>) -> CmdTimeout {
        let t = CmdTimeout {
            millis: AtomicU64::new(u64::MAX),
            read_at: std::sync::Mutex::new(None),
            before_first_command: AtomicBool::new(true),
        };
        t.reread(configfs_dir);
        t
    }

    /// Reads the attribute again (at every RECONFIG). An unreadable value
    /// is the kernel's default.
    pub fn reread(&self, configfs_dir: Option<&Path>) {
        let value = match configfs_dir {
            None => Duration::ZERO,
            Some(dir) => {
                let path = dir.join("attrib/cmd_time_out");
                match std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse::<u64>().ok())
                {
                    Some(secs) => Duration::from_secs(secs),
                    None => {
                        tracing::debug!(path = %path.display(), "cmd_time_out unreadable; assuming the kernel's default");
                        KERNEL_DEFAULT
                    }
                }
            }
        };
        *self
            .read_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        self.set(value);
    }

    /// Commands came: reads the attribute again for the first ones since
    /// the device was opened, then when the last read is [`REREAD_EVERY`]
    /// old.
    pub fn reread_for_commands(&self, configfs_dir: Option<&Path>) {
        if self.before_first_command.swap(false, Ordering::Relaxed) && configfs_dir.is_some() {
            self.reread(configfs_dir);
            return;
        }
        self.reread_if_due(configfs_dir);
    }

    /// Reads the attribute again if the last read is [`REREAD_EVERY`] old.
    pub fn reread_if_due(&self, configfs_dir: Option<&Path>) {
        let due = self
            .read_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none_or(|t| t.elapsed() >= REREAD_EVERY);
        if due && configfs_dir.is_some() {
            self.reread(configfs_dir);
        }
    }

    /// Sets the timeout (zero: none).
    pub fn set(&self, value: Duration) {
        let ms = u64::try_from(value.as_millis())
            .unwrap_or(u64::MAX - 1)
            .min(u64::MAX - 1);
        let old = self.millis.swap(ms, Ordering::Relaxed);
        if old != ms {
            tracing::info!(cmd_time_out = ?value, "cmd_time_out of the device (0: none)");
        }
    }

    /// The timeout (None: commands never time out).
    pub fn get(&self) -> Option<Duration> {
        match self.millis.load(Ordering::Relaxed) {
            0 | u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// True when a command queued no earlier than `since` may have been
    /// failed back by the kernel already.
    pub fn expired(&self, since: Instant) -> bool {
        self.get().is_some_and(|t| since.elapsed() >= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_commands_read_the_value_set_before_the_export() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("attrib")).unwrap();
        let set = |v: &str| std::fs::write(dir.path().join("attrib/cmd_time_out"), v).unwrap();
        set("30\n");
        let t = CmdTimeout::read(Some(dir.path()));
        assert_eq!(t.get(), Some(Duration::from_secs(30)));
        // Changed after the daemon opened the device, before the export;
        // the first commands come well within REREAD_EVERY.
        set("3\n");
        t.reread_for_commands(Some(dir.path()));
        assert_eq!(t.get(), Some(Duration::from_secs(3)));
        // Later commands read it only when due.
        set("5\n");
        t.reread_for_commands(Some(dir.path()));
        assert_eq!(t.get(), Some(Duration::from_secs(3)));
    }
}
