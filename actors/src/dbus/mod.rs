//! `org.kernel.TCMUService1` on the system D-Bus: what targetcli-fb asks a
//! TCMU daemon (tcmu-runner's interface, byte for byte).
//!
//! targetcli lists `/backstores/user:<name>` for every object the
//! `org.freedesktop.DBus.ObjectManager` at [`ROOT_PATH`] reports, `<name>`
//! being the last element of the object path; its `create` then calls
//! `CheckConfig("<name>/<cfgstring>")` on that object and shows the message
//! when the answer is false; `help create` prints the `ConfigDesc`
//! property. tcmud exports one object per served subtype
//! (`[daemon.subtypes]`: `thin`, `file`).
//!
//! - [`check`]: the answers, from the daemon's parser and configuration;
//! - [`service`]: the thread, the connection, the name (if tcmu-runner owns
//!   it, tcmud logs so and runs without D-Bus).

pub mod check;
pub mod service;

pub use service::{DbusContext, DbusOptions, DbusService, Started};

/// The well-known bus name.
pub const BUS_NAME: &str = "org.kernel.TCMUService1";
/// The object manager's path; handler objects are `<ROOT_PATH>/<subtype>`.
pub const ROOT_PATH: &str = "/org/kernel/TCMUService1";
/// The handler objects' interface.
pub const INTERFACE: &str = "org.kernel.TCMUService1";

/// Errors starting the D-Bus service (a missing bus is not one: the daemon
/// runs without D-Bus).
#[derive(Debug, thiserror::Error)]
pub enum DbusError {
    /// The service thread could not be started.
    #[error("cannot start the D-Bus thread: {0}")]
    Thread(#[source] std::io::Error),
}
