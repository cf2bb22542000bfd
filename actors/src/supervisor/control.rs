//! What the control socket asks the supervisor: the devices it serves and
//! the pool registries. Answered from the supervisor's own tables at once
//! (nothing here waits on a device or a pool).

use std::sync::Arc;

use actix::{Context, Handler, Message};

use super::actor::Supervisor;
use crate::backstore::{Backstores, PoolRegistry};
use crate::control::protocol::{DeviceStatus, FailedStatus};

/// A snapshot of the supervisor's view, for `tcmud status` and the pool
/// commands run online.
#[derive(Message)]
#[rtype(result = "ControlView")]
pub struct GetControlView;

/// The supervisor's answer to [`GetControlView`].
#[derive(Debug, Default)]
pub struct ControlView {
    /// Served devices, by minor.
    pub devices: Vec<DeviceStatus>,
    /// Devices of ours not served.
    pub failed: Vec<FailedStatus>,
    /// Where the configured pools are opened.
    pub registries: Vec<Arc<PoolRegistry>>,
    /// The open backstores' actors.
    pub backstores: Backstores,
}

impl Handler<GetControlView> for Supervisor {
    type Result = actix::MessageResult<GetControlView>;

    fn handle(&mut self, _: GetControlView, _: &mut Context<Self>) -> Self::Result {
        let mut devices: Vec<DeviceStatus> = self
            .devices
            .iter()
            .map(|(minor, m)| {
                let stats = m.ctl.stats().unwrap_or_default();
                DeviceStatus {
                    minor: *minor,
                    name: format!("user_{}/{}", m.uio.hba, m.uio.dev),
                    dev_config: m.uio.dev_config.clone(),
                    state: if m.ctl.is_failed() {
                        "failed"
                    } else {
                        "serving"
                    }
                    .into(),
                    in_flight: m.ctl.in_flight(),
                    completed: stats.completed,
                    errors: stats.errors,
                    bytes_in: stats.bytes_in,
                    bytes_out: stats.bytes_out,
                    restarts: stats.restarts,
                    ring_resets: stats.ring_resets,
                    timed_out: stats.timed_out,
                    task_management: stats.task_management,
                    aborted: stats.aborted,
                    sense_keys: stats.sense_keys,
                    latency: m.ctl.latency(),
                }
            })
            .collect();
        devices.sort_by_key(|d| d.minor);
        let failed = self
            .failed
            .values()
            .map(|f| FailedStatus {
                minor: f.minor,
                dev_config: f.dev_config.clone(),
                why: f.why.clone(),
            })
            .collect();
        actix::MessageResult(ControlView {
            devices,
            failed,
            registries: self.factory.registries(),
            backstores: self.factory.backstores(),
        })
    }
}
