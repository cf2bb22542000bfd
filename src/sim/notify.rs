//! The simulator's side of the event channel: kicks to and from userspace.

use std::os::fd::AsFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::kernel::KernelSim;
use super::SimError;

impl KernelSim {
    /// Notifies userspace (`uio_event_notify`): one 4-byte message carrying
    /// the event count. A full socket means a kick is pending already.
    pub fn kick(&mut self) -> Result<(), SimError> {
        self.kicks = self.kicks.wrapping_add(1);
        match nix::unistd::write(&self.event, &self.kicks.to_ne_bytes()) {
            Ok(_) | Err(Errno::EAGAIN) => Ok(()),
            Err(e) => Err(SimError::io("kick", e)),
        }
    }

    /// Waits up to `timeout` for userspace's kick (its 4-byte write) and
    /// drains all pending ones. `Ok(false)` on timeout.
    pub fn wait_kick(&mut self, timeout: Duration) -> Result<bool, SimError> {
        // A kick already queued needs no poll (one system call less).
        if self.drain_kicks()? {
            return Ok(true);
        }
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(self.event.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => return Ok(false),
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(false),
            Err(e) => return Err(SimError::io("poll", e)),
        }
        self.drain_kicks()
    }

    /// Reads every queued kick without blocking; true if there was one.
    fn drain_kicks(&mut self) -> Result<bool, SimError> {
        let mut got = false;
        let mut buf = [0u8; 4];
        loop {
            match nix::unistd::read(&self.event, &mut buf) {
                Ok(0) => break,
                Ok(_) => got = true,
                Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(SimError::io("read kick", e)),
            }
        }
        Ok(got)
    }
}
