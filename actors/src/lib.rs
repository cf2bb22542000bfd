//! The tcmud daemon: actix actors wired to the core library.
//!
//! - [`supervisor`]: the netlink supervisor actor (TCM-USER events, adoption, restarts);
//! - [`device`]: one device actor per uio minor (ring, SCSI, in-flight table, crash restart);
//! - [`backstore`]: backstore actors owning volumes (thin pools, raw files);
//! - [`offline`]: the `tcmud pool|volume` commands on pools no daemon holds;
//! - [`control`]: the control socket (`tcmud status`, the same commands on a running daemon);
//! - [`dbus`]: `org.kernel.TCMUService1` on the system bus, for targetcli-fb;
//! - [`config`], [`cli`], [`logging`], [`signals`], [`fd_limit`], [`heap`], [`hugepages`], [`priority`]:
//!   running it.

pub mod backstore;
pub mod cli;
pub mod config;
pub mod control;
pub mod dbus;
pub mod device;
pub mod fd_limit;
#[allow(unsafe_code)] // the foreign-function module: glibc malloc settings
pub mod heap;
pub mod hugepages;
pub mod logging;
pub mod manpages;
pub mod offline;
pub mod priority;
pub mod signals;
pub mod supervisor;
