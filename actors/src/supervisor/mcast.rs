//! The multicast socket the kernel's events arrive on: a neli [`NlSocket`] joined to
//! the group, read with `recvfrom` so the sender's port id is known.

use super::datagram::DatagramRecv;
use futures::future::LocalBoxFuture;
use neli::consts::socket::NlFamily;
use neli::socket::NlSocket;
use neli::utils::Groups;
use nix::sys::socket::{recvfrom, NetlinkAddr};
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
        Ok(McastSocket { fd })
    }

    /// The socket's port id (its netlink address).
    pub fn port_id(&self) -> std::io::Result<u32> {
        nix::sys::socket::getsockname::<NetlinkAddr>(self.fd.get_ref().as_raw_fd())
            .map(|a| a.pid())
            .map_err(std::io::Error::from)
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
