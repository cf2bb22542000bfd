//! CPU time and memory of this process from `/proc`.

use std::time::Duration;

/// CPU time (user + system) of every live thread of this process, summed
/// from `/proc/self/task/*/schedstat` (nanoseconds, unlike the 10 ms ticks
/// of `/proc/self/stat`). Threads that exit between two readings take their
/// time with them: measure while the threads doing the work are alive.
pub fn process_cpu() -> Duration {
    let mut ns = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            let path = task.path().join("schedstat");
            if let Ok(text) = std::fs::read_to_string(path) {
                ns += first_u64(&text);
            }
        }
    }
    Duration::from_nanos(ns)
}

/// Context switches (voluntary + involuntary) of every live thread of this
/// process, from `/proc/self/task/*/status`.
pub fn process_switches() -> u64 {
    let mut n = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for task in dir.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            for line in text.lines() {
                if let Some(v) = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    n += first_u64(v);
                }
            }
        }
    }
    n
}

/// Minor page faults of this process so far (`/proc/self/stat` field 10,
/// counting exited threads too).
pub fn process_minor_faults() -> u64 {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .nth(7)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time of the calling thread (`/proc/thread-self/schedstat`).
pub fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(first_u64(&text))
}

fn first_u64(text: &str) -> u64 {
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The memory lines of `/proc/self/status` the RSS bench reports, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// Resident set size.
    pub rss: u64,
    /// Resident anonymous memory (heap, stacks).
    pub anon: u64,
    /// Resident shared memory (the ring mappings: memfd pages touched).
    pub shmem: u64,
    /// Resident file-backed pages (the binary, libraries).
    pub file: u64,
    /// Virtual size.
    pub vm_size: u64,
    /// Threads.
    pub threads: u64,
}

/// Reads [`Memory`] from `/proc/self/status`.
pub fn memory() -> Memory {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut m = Memory::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let v = first_u64(value);
        match key {
            "VmRSS" => m.rss = v,
            "RssAnon" => m.anon = v,
            "RssShmem" => m.shmem = v,
            "RssFile" => m.file = v,
            "VmSize" => m.vm_size = v,
            "Threads" => m.threads = v,
            _ => {}
        }
    }
    m
}
