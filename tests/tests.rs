//! The integration tests of `tcmud-core`, one binary (`cargo test -p
//! tcmud-core --test integration`): themed modules, one file each under
//! `tests/<theme>/`, helpers in `tests/util/`. How to add one: tests/README.md.

mod util;

/// The thin pool on a real directory: formats, crashes, durability, bad input.
mod pool {
    mod bad_input;
    mod basic;
    mod concurrent_fua;
    mod crash;
    mod durability;
    mod fixture;
    mod format3;
    mod identity;
    mod inspect;
    mod kill9;
    mod migrations;
    mod model;
    mod parallel_writes;
    mod sparse_data;
}

/// The TCMU ring against the kernel simulator (and the simulator itself).
mod ring {
    mod basic;
    mod data_leak;
    mod hostile;
    mod prop;
    mod reset;
    mod resident;
    mod sim_kernel;
}

/// SCSI emulation through `Lun` (and end to end through the ring).
mod scsi {
    mod caw_errors;
    mod conformance;
    mod data_out;
    mod e2e_sim;
    mod lbp;
    mod mode;
    mod plan;
    mod prop;
    mod review;
    mod ring;
    mod sbc;
    mod spc;
    mod xcopy;
}

/// The zero-copy data path: backends reading into and writing from the
/// ring's data area.
mod zero_copy {
    mod backends;
    mod nowait_reads;
    mod ring;
}
