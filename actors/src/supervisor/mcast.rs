//! The multicast socket the kernel's events arrive on: a neli [`NlSocket`] joined to
//! the group, read with `recvfrom` so the sender's port id is known.

use super::datagram::DatagramRecv;
use futures::future::LocalBoxFuture;
use neli::consts::socket::NlFamily;
use neli::socket::NlSocket;
use neli::utils::Groups;
use nix::sys::socket::{getsockopt, recvfrom, setsockopt, sockopt, NetlinkAddr};
use std::os::fd::AsRawFd;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A non-blocking netlink socket, readable through tokio.
pub struct McastSocket {
    fd: AsyncFd<NlSocket>,
}

impl McastSocket {
    /// Opens a socket of `family` bound to an automatic port id, joined to `groups`
    /// (none for a plain unicast socket, as tests use). Must run inside a tokio runtime.
    pub fn open(family: NlFamily, groups: &[u32]) -> std::io::Result<McastSocket> {
        let sock = NlSocket::connect(family, None, Groups::empty())?;
        if !groups.is_empty() {
            sock.add_mcast_membership(Groups::new_groups(groups))?;
        }
        sock.nonblock()?;
        // The `AsyncFd` owns the socket (closed on drop, never before): the deprecated
        // safe constructor is sound here (see device/wake.rs) and keeps the crate free
        // of `unsafe`.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(sock, Interest::READABLE)?;
        grow_receive_buffer(&fd);
        Ok(McastSocket { fd })
    }

    /// The socket's receive buffer in bytes, as the kernel accounts it
    /// (twice what was asked: its bookkeeping).
    pub fn receive_buffer(&self) -> std::io::Result<usize> {
        getsockopt(&self.fd, sockopt::RcvBuf).map_err(std::io::Error::from)
    }

    /// The socket's port id (its netlink address).
    pub fn port_id(&self) -> std::io::Result<u32> {
        nix::sys::socket::getsockname::<NetlinkAddr>(self.fd.get_ref().as_raw_fd())
            .map(|a| a.pid())
            .map_err(std::io::Error::from)
    }
}

/// Receive buffer asked for: room for ~10,000 queued events. The supervisor
/// reads events on its own thread, which is busy while it opens a device's
/// backstore; a burst of 1,000 ADDED events overran the default (rmem_default,
/// 208 KiB: a few hundred events), and the events lost were only found again
/// by a rescan.
pub const RECEIVE_BUFFER: usize = 8 << 20;

/// Sets the receive buffer to [`RECEIVE_BUFFER`]: beyond `rmem_max` with
/// SO_RCVBUFFORCE (CAP_NET_ADMIN, which the daemon has for its netlink
/// replies), else as far as `rmem_max` allows. An overrun is still handled
/// (ENOBUFS -> rescan); this makes it rare.
fn grow_receive_buffer(fd: &AsyncFd<NlSocket>) {
    let forced = setsockopt(fd, sockopt::RcvBufForce, &RECEIVE_BUFFER);
    if let Err(e) = forced {
        let capped = setsockopt(fd, sockopt::RcvBuf, &RECEIVE_BUFFER);
        tracing::debug!(error = %e, capped = capped.is_ok(),
            "netlink receive buffer not forced; capped by net.core.rmem_max");
    }
}

impl AsRawFd for McastSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}

impl DatagramRecv for McastSocket {
    fn recv<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> LocalBoxFuture<'a, std::io::Result<(usize, Option<u32>)>> {
        Box::pin(async move {
            loop {
                let mut guard = self.fd.readable().await?;
                let got = guard.try_io(|s| {
                    recvfrom::<NetlinkAddr>(s.get_ref().as_raw_fd(), buf)
                        .map(|(n, addr)| (n, addr.map(|a| a.pid())))
                        .map_err(std::io::Error::from)
                });
                if let Ok(r) = got {
                    return r;
                }
            }
        })
    }
}
