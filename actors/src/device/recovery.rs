//! Opening a device's ring, and recovering a ring left behind by a daemon
//! that died (process restart).
//!
//! - `reset` (default): `action/block_dev`=1, `action/reset_ring`=1 (the
//!   kernel fails what is in the ring with BUSY, initiators retry), map the
//!   ring, `action/block_dev`=0. Safe whatever the dead daemon did.
//! - `replay`: map the ring and execute again everything between `cmd_tail`
//!   and `cmd_head`. Only safe if the previous run completed in order (with
//!   out-of-order completion, slots before `cmd_head` were reused). On a ring
//!   that offers out-of-order completion (`CAP_OOOC`) the device is refused
//!   with [`RecoveryError::ReplayOutOfOrder`].
//!
//! Neither policy falls back to the other: `reset` without a configfs
//! directory refuses the device ([`RecoveryError::NoConfigfs`]).

use std::fs;
use std::path::Path;

use tcmud_core::ring::{Caps, Ring};

use super::{DeviceError, DeviceSpec, RecoveryPolicy};

/// Why the recovery policy cannot be applied to an adopted device's ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// `replay` on a ring offering out-of-order completion.
    #[error(
        "recovery = \"replay\" refused: the ring offers out-of-order completion, so the \
         entries between tail and head may be commands already completed (replaying them \
         re-executes writes and breaks the ring); set recovery = \"reset\""
    )]
    ReplayOutOfOrder,
    /// `reset` without the configfs directory holding `action/reset_ring`.
    #[error(
        "recovery = \"reset\" impossible: no configfs directory for the device \
         (action/reset_ring); refusing to serve the ring as the previous daemon left it"
    )]
    NoConfigfs,
}

/// Checks that the ring of an adopted device may be recovered with `policy`
/// (`caps`: the capabilities the kernel offers in the ring's mailbox).
pub(crate) fn check_policy(policy: RecoveryPolicy, caps: Caps) -> Result<(), RecoveryError> {
    match policy {
        RecoveryPolicy::Replay if caps.ooo => Err(RecoveryError::ReplayOutOfOrder),
        _ => Ok(()),
    }
}

/// Opens `/dev/uioN` of `spec`, applying its recovery policy if it was
/// adopted.
pub(crate) fn open_uio_ring(spec: &DeviceSpec) -> Result<Ring, DeviceError> {
    let open = || {
        Ring::open_uio(&spec.dev_path, &spec.sysfs_dir).map_err(|source| DeviceError::Ring {
            what: format!("open {}", spec.dev_path.display()),
            source,
        })
    };
    let mut ring = match (&spec.recovery, &spec.configfs_dir) {
        // Nothing stale to recover (and the kernel refuses the actions with
        // EINVAL while it is still configuring a new device).
        _ if !spec.adopted => open()?,
        (RecoveryPolicy::Reset, Some(dir)) => {
            let blocked = write_action(dir, "block_dev", "1");
            if let Err(e) = write_action(dir, "reset_ring", "1") {
                tracing::warn!(error = %e, "reset_ring failed; continuing with the ring as it is");
            }
            let ring = open();
            if blocked.is_ok() {
                if let Err(e) = write_action(dir, "block_dev", "0") {
                    tracing::error!(error = %e, "cannot unblock the device");
                }
            } else if let Err(e) = blocked {
                tracing::warn!(error = %e, "block_dev failed");
            }
            ring?
        }
        (RecoveryPolicy::Reset, None) => return Err(RecoveryError::NoConfigfs.into()),
        (RecoveryPolicy::Replay, _) => {
            let ring = open()?;
            check_policy(spec.recovery, ring.caps())?;
            ring
        }
    };
    ring.resync_from_tail();
    Ok(ring)
}

fn write_action(configfs_dir: &Path, knob: &str, value: &str) -> std::io::Result<()> {
    let path = configfs_dir.join("action").join(knob);
    tracing::info!(path = %path.display(), value, "configfs action");
    fs::write(&path, value)
}
