//! The daemon's CPU priority (`daemon.nice`, default [`DEFAULT_NICE`]).
//!
//! tcmud serves every LUN from a few threads (one device thread per core,
//! a shared I/O pool), and the initiators it serves often run on the same
//! host (tcm_loop, a hypervisor's disks). The kernel's fair scheduler
//! shares the CPU per thread: a thousand initiator threads busy checksumming
//! get a thousand shares where the daemon's device threads get a handful, and
//! the commands those initiators wait on then wait for CPU until the kernel's
//! `cmd_time_out` fails them (issue 19: 1,000 LUNs, commands older than 30 s
//! on a saturated host). The block layer's own workers run at high priority
//! for the same reason (kblockd: nice −20). The daemon's threads run at
//! `nice` −10 by default (about nine times the weight of a nice-0 thread);
//! `0` leaves the priority it was started with.
//!
//! Linux keeps the nice value per thread, and a new thread takes its
//! creator's: set at start, before any thread exists, it holds for every
//! thread the daemon makes. A reload sets it on every running thread.

use std::io;

use rustix::process::{getpriority_process, setpriority_process, Pid};

/// The nice value of the daemon's threads unless the config says otherwise.
pub const DEFAULT_NICE: i8 = -10;

/// The nice value could not be set.
#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    /// `setpriority` refused (raising a priority needs `CAP_SYS_NICE`, or
    /// an `RLIMIT_NICE` that allows it).
    #[error(
        "cannot set the daemon's threads to nice {nice}: {source} (a priority above the \
         default needs CAP_SYS_NICE or RLIMIT_NICE; daemon.nice = 0 keeps the one it started with)"
    )]
    Set {
        /// The value asked for.
        nice: i8,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// `/proc/self/task` could not be listed.
    #[error("cannot list the daemon's threads in /proc/self/task: {0}")]
    Threads(#[source] io::Error),
}

/// `daemon.nice` applied: every thread set to `nice` ([`set_process_nice`]),
/// or `None` for 0, which leaves the priority the daemon was started with.
pub fn apply(nice: i8) -> Option<Result<usize, PriorityError>> {
    (nice != 0).then(|| set_process_nice(nice))
}

/// Sets every thread of this process to `nice` (a thread that ends
/// meanwhile is skipped); returns how many were set.
pub fn set_process_nice(nice: i8) -> Result<usize, PriorityError> {
    let mut set = 0;
    for entry in std::fs::read_dir("/proc/self/task").map_err(PriorityError::Threads)? {
        let entry = entry.map_err(PriorityError::Threads)?;
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(Pid::from_raw)
        else {
            continue;
        };
        match setpriority_process(Some(tid), i32::from(nice)) {
            Ok(()) => set += 1,
            Err(rustix::io::Errno::SRCH) => {} // the thread ended
            Err(e) => {
                return Err(PriorityError::Set {
                    nice,
                    source: e.into(),
                })
            }
        }
    }
    Ok(set)
}

/// The nice value of the calling thread.
pub fn current_nice() -> io::Result<i32> {
    Ok(getpriority_process(None)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Field 19 of `/proc/self/task/TID/stat`: the thread's nice value.
    fn nice_of(tid: i32) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // the name (field 2) may hold spaces: count from the closing parenthesis
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn threads_running_and_threads_made_later_take_the_nice_value() {
        // one step lower than now: allowed without privileges
        let now = current_nice().unwrap();
        let want = i8::try_from(now + 1).unwrap().min(19);
        let (tid_tx, tid_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let before = std::thread::spawn(move || {
            tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
            go_rx.recv().unwrap();
        });
        let early = tid_rx.recv().unwrap();
        assert_eq!(nice_of(early), now);

        let n = set_process_nice(want).unwrap();
        assert!(n >= 2, "set {n} threads");
        assert_eq!(nice_of(early), i32::from(want), "a thread running before");
        let later = std::thread::spawn(|| current_nice().unwrap())
            .join()
            .unwrap();
        assert_eq!(later, i32::from(want), "a thread made after");
        go_tx.send(()).unwrap();
        before.join().unwrap();
    }
}
