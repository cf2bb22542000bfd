//! The production [`DeviceFactory`]: device actors from `device::spawn_device`.
//!
//! Until the device actors are merged this classifies dev_configs itself and
//! refuses to spawn (ENOSYS), so the supervisor never answers wrongly.

use super::devices::{DeviceCtl, DeviceFactory, DeviceRequest, Ownership, SpawnError};
use crate::config::DaemonConfig;

/// Creates real device actors from the daemon config.
pub struct RealFactory {
    cfg: DaemonConfig,
}

impl RealFactory {
    /// A factory serving the pools of `cfg`.
    pub fn new(cfg: &DaemonConfig) -> Self {
        RealFactory { cfg: cfg.clone() }
    }
}

/// Subtype-only classification (`thin/<pool>/<volume>`, `file/<path>`).
pub fn classify(dev_config: &str) -> Ownership {
    match dev_config.split_once('/') {
        Some(("thin", rest)) => match rest.split_once('/') {
            Some((p, v)) if !p.is_empty() && !v.is_empty() && !v.contains('/') => Ownership::Ours,
            _ => Ownership::Invalid(format!("{dev_config:?}: expected thin/<pool>/<volume>")),
        },
        Some(("file", rest)) if rest.starts_with('/') && rest.len() > 1 => Ownership::Ours,
        Some(("file", _)) => {
            Ownership::Invalid(format!("{dev_config:?}: expected file//<absolute path>"))
        }
        _ => Ownership::Foreign,
    }
}

impl DeviceFactory for RealFactory {
    fn ownership(&self, dev_config: &str) -> Ownership {
        classify(dev_config)
    }

    fn spawn(&mut self, req: DeviceRequest) -> Result<Box<dyn DeviceCtl>, SpawnError> {
        let _ = (&self.cfg, req);
        Err(SpawnError::new(
            libc::ENOSYS,
            "device actors are not built into this tcmud",
        ))
    }

    fn reload(&mut self, cfg: &DaemonConfig) {
        self.cfg = cfg.clone();
    }

    fn flush_all(&self) -> Result<(), String> {
        Ok(())
    }
}
