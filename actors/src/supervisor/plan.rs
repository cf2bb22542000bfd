//! What one kernel event means for the supervisor: parse, classify, plan the
//! device operation and the `*_DONE` status.

use super::actor::Supervisor;
use super::devices::Ownership;
use super::sysfs;
use futures::future::LocalBoxFuture;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tcmud_core::netlink::{parse_event, NlCmd, NlEvent, Reconfig, UioName};

impl Supervisor {
    /// Decides what an event means: `None` = not ours / dropped (no reply), else a
    /// future (maybe stopping a device) followed by a step computing the status.
    fn plan(&mut self, ev: &NlEvent, uio: UioName) -> Option<Plan> {
        let minor = ev.minor;
        let owned_now = self.devices.contains_key(&minor);
        let ownership = self.factory.ownership(&uio.dev_config);
        if !owned_now && ownership == Ownership::Foreign {
            tracing::debug!(minor, device = %ev.device, cmd = ?ev.cmd, "event for a foreign device ignored");
            return None;
        }
        if matches!(ev.cmd, NlCmd::Added | NlCmd::Removed) && self.retries.remove(&minor).is_some()
        {
            // A dead device waiting for its retry: this event decides instead.
            tracing::info!(minor, cmd = ?ev.cmd, "pending retry of a dead device dropped");
            self.refused.remove(&minor);
            if ev.cmd == NlCmd::Added {
                self.failed.remove(&minor);
            }
        }
        Some(match (ev.cmd, &ev.reconfig) {
            (NlCmd::Added, _) => match ownership {
                _ if owned_now => match self.devices.remove(&minor) {
                    // The same device announced twice (adopted during start-up): done.
                    Some(m) if m.uio == uio => {
                        self.devices.insert(minor, m);
                        Plan::now(0)
                    }
                    // A reused minor whose REMOVED we never saw: replace the stale device.
                    Some(m) => {
                        tracing::warn!(minor, old = %m.uio.dev_config, "stale device on a reused minor replaced");
                        Plan::then(Some(m.ctl.stop()), move |s| {
                            s.start_device(minor, uio, false)
                        })
                    }
                    None => Plan::now(0),
                },
                Ownership::Invalid(why) => {
                    tracing::error!(minor, device = %ev.device, %why, "invalid dev_config");
                    Plan::now(-libc::EINVAL)
                }
                _ => Plan::then(None, move |s| s.start_device(minor, uio, false)),
            },
            (NlCmd::Removed, _) => match self.devices.remove(&minor) {
                // A device whose setup failed is forgotten with its kernel device.
                None if self.failed.remove(&minor).is_some() => Plan::now(0),
                Some(m) => {
                    tracing::info!(minor, "device removed; draining");
                    Plan::then(Some(m.ctl.stop()), |_| 0)
                }
                None => Plan::now(0),
            },
            (NlCmd::Reconfig, _) if !owned_now => {
                tracing::warn!(minor, device = %ev.device, "reconfig for a device not served");
                Plan::now(-libc::ENODEV)
            }
            (NlCmd::Reconfig, Some(Reconfig::DevSize(n))) => {
                let n = *n;
                let Some(m) = self.devices.get(&minor) else {
                    return Some(Plan::now(-libc::ENODEV));
                };
                tracing::info!(minor, size = n, "resizing device");
                // Answered once the backstore has the new size (or refused it).
                let resized = m.ctl.resize(n);
                Plan::status_of(Box::pin(async move {
                    match resized.await {
                        Ok(()) => 0,
                        Err(e) => {
                            tracing::error!(minor, size = n, error = %e, "resize refused");
                            -e.errno.abs().max(1)
                        }
                    }
                }))
            }
            (NlCmd::Reconfig, Some(Reconfig::WriteCache(on))) => {
                if let Some(m) = self.devices.get(&minor) {
                    tracing::info!(minor, write_cache = on, "write cache changed");
                    m.ctl.set_write_cache(*on);
                }
                Plan::now(0)
            }
            (NlCmd::Reconfig, Some(Reconfig::DevCfg(new))) => {
                match self.factory.ownership(new) {
                    Ownership::Ours => {}
                    other if self.cfg.netlink_replies => {
                        // The kernel applies the change only if we answer 0: refuse it.
                        tracing::error!(minor, new_dev_config = %new, ?other, "refusing dev_config change");
                        return Some(Plan::now(-libc::EINVAL));
                    }
                    other => {
                        // Without replies the kernel already applied it: let the device go.
                        tracing::warn!(minor, new_dev_config = %new, ?other, "device no longer ours; released");
                        return Some(match self.devices.remove(&minor) {
                            Some(old) => Plan::then(Some(old.ctl.stop()), |_| -libc::EINVAL),
                            None => Plan::now(-libc::EINVAL),
                        });
                    }
                }
                let Some(old) = self.devices.get(&minor) else {
                    return Some(Plan::now(-libc::ENODEV));
                };
                if old.uio.dev_config == *new {
                    return Some(Plan::now(0));
                }
                let mut uio = old.uio.clone();
                uio.dev_config = new.clone();
                // The new backstore opens before the old device closes: if it
                // cannot, the old one stays served and the reply says why.
                let req = self.request(minor, &uio, false);
                let factory = &mut self.factory;
                let opened = catch_unwind(AssertUnwindSafe(|| factory.open(&req)));
                let opened = match opened {
                    Ok(Ok(o)) => o,
                    Ok(Err(e)) => {
                        tracing::error!(minor, new_dev_config = %new, error = %e,
                            "dev_config change refused: the new backstore cannot be opened; the old one stays served");
                        return Some(Plan::now(-e.errno.abs().max(1)));
                    }
                    Err(payload) => {
                        let msg = crate::device::panic_message(payload.as_ref());
                        tracing::error!(minor, new_dev_config = %new, panic = %msg,
                            "dev_config change refused: opening the new backstore panicked; the old one stays served");
                        return Some(Plan::now(-libc::EIO));
                    }
                };
                let old = self.devices.remove(&minor)?;
                tracing::info!(minor, new_dev_config = %new, "dev_config changed; new backstore open, closing the old device");
                let stop = old.ctl.stop_reporting();
                Plan::status_of(Box::pin(async move {
                    let stopped = stop.await;
                    i32::try_from(stopped.abandoned).unwrap_or(i32::MAX)
                }))
                .and_then(move |s, abandoned| {
                    let mut req = req;
                    if abandoned > 0 {
                        // The same ring still holds the commands the drain deadline
                        // abandoned: open it as adopted with the reset recovery (the
                        // kernel fails them) instead of the new device walking from the
                        // tail and executing them again.
                        tracing::warn!(
                            minor,
                            abandoned,
                            "old device abandoned commands in the ring: re-opened with recovery"
                        );
                        req.adopted = true;
                        // Replay would execute them again: reset whatever the config says.
                        req.recovery = crate::config::RecoveryPolicy::Reset;
                    }
                    s.serve(minor, uio, req, Some(opened))
                })
            }
            (NlCmd::Reconfig, None) => Plan::now(-libc::EINVAL),
        })
    }

    pub(super) fn handle_payload(&mut self, payload: &[u8]) -> Option<(NlEvent, Plan)> {
        let ev = match parse_event(payload) {
            Ok(ev) => ev,
            Err(err) => {
                tracing::warn!(%err, len = payload.len(), "malformed TCM-USER message dropped");
                return None;
            }
        };
        if !ev.unknown_attrs.is_empty() {
            tracing::debug!(attrs = ?ev.unknown_attrs, "unknown TCM-USER attributes ignored");
        }
        let uio = match UioName::parse(&ev.device) {
            Ok(u) => u,
            Err(err) => {
                tracing::warn!(%err, "TCM-USER event with a malformed device name dropped");
                return None;
            }
        };
        if matches!(ev.cmd, NlCmd::Added | NlCmd::Reconfig) {
            // The kernel names the device by its uio name, which sysfs shows for the
            // minor: an event that disagrees did not come from the kernel's device.
            let actual = sysfs::uio_name(&self.cfg, ev.minor);
            // Without replies the kernel applies a dev_config change without waiting
            // for us: sysfs may already show the new name.
            let renamed = match &ev.reconfig {
                Some(Reconfig::DevCfg(new)) => {
                    Some(format!("tcm-user/{}/{}/{new}", uio.hba, uio.dev))
                }
                _ => None,
            };
            let agrees = |name: &String| *name == ev.device || Some(name) == renamed.as_ref();
            if !actual.as_ref().is_some_and(agrees) {
                tracing::warn!(
                    minor = ev.minor,
                    cmd = ?ev.cmd,
                    device = %ev.device,
                    sysfs = actual.as_deref().unwrap_or("<no uio device>"),
                    "event does not match the uio device in sysfs; ignored"
                );
                return None;
            }
        }
        let plan = self.plan(&ev, uio)?;
        Some((ev, plan))
    }
}

/// The step after the wait: gets the wait's status (0 without a wait),
/// returns the reply's.
pub(super) type Step = Box<dyn FnOnce(&mut Supervisor, i32) -> i32>;

/// What to do for one owned event.
pub(super) struct Plan {
    /// Runs first, beside other devices' events (a drain, a resize); its
    /// output is a status.
    pub(super) wait: Option<LocalBoxFuture<'static, i32>>,
    pub(super) then: Step,
}

impl Plan {
    fn now(status: i32) -> Plan {
        Plan {
            wait: None,
            then: Box::new(move |_, _| status),
        }
    }
    /// Waits for `stop` (a device drain), then runs `f`.
    fn then(
        stop: Option<LocalBoxFuture<'static, ()>>,
        f: impl FnOnce(&mut Supervisor) -> i32 + 'static,
    ) -> Plan {
        Plan {
            wait: stop.map(|s| -> LocalBoxFuture<'static, i32> {
                Box::pin(async move {
                    s.await;
                    0
                })
            }),
            then: Box::new(move |sup, _| f(sup)),
        }
    }
    /// Runs `wait`, then `f` with its output (not a status: `f` returns it).
    fn and_then(self, f: impl FnOnce(&mut Supervisor, i32) -> i32 + 'static) -> Plan {
        Plan {
            wait: self.wait,
            then: Box::new(f),
        }
    }
    /// Replies with the status `wait` resolves to.
    fn status_of(wait: LocalBoxFuture<'static, i32>) -> Plan {
        Plan {
            wait: Some(wait),
            then: Box::new(|_, status| status),
        }
    }
}
