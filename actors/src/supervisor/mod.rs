//! The supervisor: kernel events (TCM-USER netlink) -> device actors.
//!
//! - [`actor`]: the [`Supervisor`] actor (adoption, events, replies, shutdown);
//! - [`source`]: the event-source abstraction and the test [`FakeSource`];
//! - [`netlink`]: the real source (neli);
//! - [`datagram`]: which datagrams are kernel events (sender check), the receive pump;
//! - `mcast`: the multicast socket read with `recvfrom`;
//! - `plan`: what one event means (classification, device operation, status);
//! - [`devices`]: what the supervisor needs from device actors ([`DeviceFactory`]);
//! - [`real`]: the production factory;
//! - `reap`: dead devices (uio gone, actor failed or abandoned) reaped and retried;
//! - [`instance`]: the single-instance lock;
//! - [`coexist`]: module-wide settings changed only when no other TCMU daemon runs;
//! - [`sysfs`]: prerequisites, module parameters, existing devices, geometry;
//! - `control`: what the control socket asks the supervisor ([`ControlView`]);
//! - [`run`]: [`run_daemon`], the whole daemon life cycle.

pub mod actor;
pub mod coexist;
mod control;
pub mod datagram;
pub mod devices;
pub mod instance;
mod mcast;
pub mod netlink;
mod plan;
pub mod real;
mod reap;
pub mod run;
pub mod source;
pub mod sysfs;

pub use actor::{
    FailedDevice, ListDevices, ListFailed, RawEvent, Reload, Shutdown, Supervisor,
    SupervisorSignals,
};
pub use control::{ControlView, GetControlView};
pub use devices::{
    DeviceCtl, DeviceFactory, DeviceRequest, Opened, Ownership, ReconfigError, SpawnError, Stopped,
};
pub use mcast::{McastSocket, RECEIVE_BUFFER};
pub use run::{run_daemon, ReloadSource, SupervisorError};
pub use source::{EventSource, FakeSource, Replier, SendError, SourceEvent};
