//! The integration tests of the daemon crate `tcmud`, one binary (`cargo
//! test -p tcmud --test integration`): themed modules, one file each under
//! `actors/tests/<theme>/`, helpers in `actors/tests/util/`. How to add one:
//! tests/README.md.

mod util;

/// Backstores: opened from dev_config, and their actors.
mod backstore {
    mod actor;
    mod open;
}

/// Configuration: the command line and config files.
mod config {
    mod cli;
    mod files;
}

/// The control socket and the D-Bus service.
mod control {
    mod dbus;
    mod socket;
}

/// The `tcmud` binary and what it leaves on the host: exit codes, file
/// modes, the instance lock, the systemd unit.
mod daemon {
    mod cli_exit;
    mod file_modes;
    mod instance_lock;
    mod systemd_unit;
}

/// The device actor driven by the kernel simulator.
mod device {
    mod cmd_timeout;
    mod data_leak;
    mod drain;
    mod drain_deadline;
    #[cfg(feature = "fault-injection")]
    mod fault_file;
    mod identity;
    mod idle;
    mod limits;
    mod malformed;
    mod metrics;
    mod read_len;
    mod recovery;
    mod resize;
    mod restart;
    mod ring_reset;
    mod shared_threads;
    mod sim;
    mod wakeups;
    mod write_cache;
}

/// The RBD backstore against the test cluster (tests/ceph/cluster.sh).
#[cfg(feature = "rbd")]
mod rbd {
    mod alua;
    mod control;
    mod device;
    mod outage;
}

/// The supervisor: netlink events, sysfs, reconfiguration, failures.
mod supervisor {
    mod coexistence;
    mod datagram;
    mod drain_isolation;
    mod events;
    mod failed;
    mod neli_codec;
    mod real;
    mod reconfig_replies;
    mod setup_panic;
    mod storm;
    mod sysfs;
    mod watchdog;
}
