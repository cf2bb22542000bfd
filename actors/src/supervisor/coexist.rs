//! Living beside other TCMU daemons (tcmu-runner). target_core_user's
//! module parameters and its reply flag are global: `block_netlink=1` makes
//! every device's enable, removal and reconfiguration fail while it is set,
//! `reset_netlink=1` fails every configfs write waiting for a daemon's reply,
//! and SET_FEATURES(0) takes replies away from a daemon that turned them on.
//! tcmud changes them only when it is the only TCMU daemon
//! ([`ModuleParams`]): `auto` decides at start from the TCMU devices that
//! exist (another daemon's device: shared).

use super::devices::Ownership;
use super::sysfs;
use crate::config::{DaemonConfig, ModuleParams};

/// Whether tcmud may change module-wide settings: `exclusive`/`shared` as
/// configured; `auto`: exclusive unless a TCMU device that is not ours
/// exists (its daemon would be hurt).
pub fn exclusive(cfg: &DaemonConfig, ownership: impl Fn(&str) -> Ownership) -> bool {
    match cfg.module_params {
        ModuleParams::Exclusive => true,
        ModuleParams::Shared => false,
        ModuleParams::Auto => {
            let foreign: Vec<String> = sysfs::scan_uio(cfg)
                .into_iter()
                .filter(|f| ownership(&f.uio.dev_config) == Ownership::Foreign)
                .map(|f| f.name)
                .collect();
            if foreign.is_empty() {
                return true;
            }
            tracing::info!(devices = ?foreign,
                "other TCMU daemons' devices exist: module parameters and the reply flag are left alone (module_params = \"shared\")");
            false
        }
    }
}

/// Holds `block_netlink=1` from start-up until devices are adopted (or on
/// failure), in exclusive mode only.
pub struct NetlinkBlock<'a> {
    cfg: &'a DaemonConfig,
    blocked: bool,
}

impl<'a> NetlinkBlock<'a> {
    /// Blocks netlink and fails replies a previous daemon left pending, when
    /// `exclusive`; otherwise changes nothing.
    pub fn engage(cfg: &'a DaemonConfig, exclusive: bool) -> Self {
        if !exclusive {
            return NetlinkBlock {
                cfg,
                blocked: false,
            };
        }
        let blocked = match sysfs::set_module_param(cfg, "block_netlink", "1") {
            Ok(b) => b,
            Err(err) => {
                tracing::warn!(%err, "cannot block netlink during start-up");
                false
            }
        };
        if blocked {
            // Fails pending commands still waiting for a reply from a previous daemon.
            if let Err(err) = sysfs::set_module_param(cfg, "reset_netlink", "1") {
                tracing::warn!(%err, "cannot reset netlink");
            }
            tracing::info!("netlink blocked and reset for start-up");
        }
        NetlinkBlock { cfg, blocked }
    }

    /// Unblocks netlink (once).
    pub fn release(&mut self) {
        if std::mem::take(&mut self.blocked) {
            match sysfs::set_module_param(self.cfg, "block_netlink", "0") {
                Ok(_) => tracing::info!("netlink unblocked"),
                Err(err) => tracing::error!(%err, "cannot unblock netlink"),
            }
        }
    }
}

impl Drop for NetlinkBlock<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Whether SET_FEATURES is sent at start: to turn replies on always; to
/// turn them off (clearing a stale flag of an earlier tcmud) only when
/// exclusive, since another daemon may have turned them on for its devices.
pub fn send_set_features(cfg: &DaemonConfig, exclusive: bool) -> bool {
    cfg.netlink_replies || exclusive
}
