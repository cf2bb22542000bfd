//! Trust at the socket: which received netlink datagrams are kernel events, and the
//! pump that turns a datagram socket into the supervisor's event stream.
//!
//! Any process with CAP_NET_ADMIN can multicast to a generic-netlink group, and the
//! `nlmsg_pid` in a message header is whatever the sender wrote. The only proof of
//! origin is the source address the kernel fills in on `recvfrom`: port id 0 is the
//! kernel. neli's receive path drops that address, so the multicast socket is read
//! here with `recvfrom`; the framing (splitting a datagram into `nlmsghdr`s) is neli's.

use super::source::SourceEvent;
use futures::future::LocalBoxFuture;
use neli::nl::{NlPayload, Nlmsghdr};
use neli::types::Buffer;
use neli::FromBytes;
use std::io::Cursor;
use tokio::sync::mpsc;

/// Why a datagram was not turned into events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Dropped {
    /// The sender is a process, not the kernel (source port id != 0).
    #[error("datagram from port id {0}, not from the kernel (port id 0)")]
    NotKernel(u32),
    /// The datagram carried no sender address.
    #[error("datagram without a netlink source address")]
    NoAddress,
    /// neli could not split the datagram into netlink messages.
    #[error("malformed netlink datagram: {0}")]
    Malformed(String),
}

/// The genl payloads (genl header + attributes) of every message of `family` in a
/// datagram received from port id `sender`; other families' messages are skipped.
pub fn kernel_payloads(
    sender: Option<u32>,
    family: u16,
    datagram: &[u8],
) -> Result<Vec<Vec<u8>>, Dropped> {
    match sender {
        None => return Err(Dropped::NoAddress),
        Some(0) => {}
        Some(pid) => return Err(Dropped::NotKernel(pid)),
    }
    let mut cur = Cursor::new(datagram);
    let mut out = Vec::new();
    while usize::try_from(cur.position()).is_ok_and(|p| p < datagram.len()) {
        let msg = Nlmsghdr::<u16, Buffer>::from_bytes(&mut cur)
            .map_err(|e| Dropped::Malformed(e.to_string()))?;
        if *msg.nl_type() != family {
            continue;
        }
        if let NlPayload::Payload(p) = msg.nl_payload() {
            out.push(p.as_ref().to_vec());
        }
    }
    Ok(out)
}

/// One `recvfrom` on a datagram socket: bytes received and the sender's port id.
pub trait DatagramRecv {
    /// Receives one datagram into `buf`.
    fn recv<'a>(
        &'a mut self,
        buf: &'a mut [u8],
    ) -> LocalBoxFuture<'a, std::io::Result<(usize, Option<u32>)>>;
}

/// Largest datagram read at once (the kernel's events are a few hundred bytes).
const RECV_BUF: usize = 64 * 1024;

/// Reads datagrams until the socket fails or the receiver is gone, forwarding the
/// kernel's events of `family`. A receive buffer overrun (ENOBUFS: the kernel dropped
/// events) becomes [`SourceEvent::Overrun`] and reading goes on; a forged or malformed
/// datagram is logged and dropped. Returns the error that ended it, if any.
pub async fn pump(
    mut sock: impl DatagramRecv,
    family: u16,
    tx: mpsc::Sender<SourceEvent>,
) -> Option<std::io::Error> {
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let (n, sender) = match sock.recv(&mut buf).await {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                tracing::warn!("netlink receive buffer overrun: kernel events lost; rescanning");
                if tx.send(SourceEvent::Overrun).await.is_err() {
                    return None;
                }
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Some(e),
        };
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        match kernel_payloads(sender, family, datagram) {
            Ok(payloads) => {
                for p in payloads {
                    if tx.send(SourceEvent::Event(p)).await.is_err() {
                        return None;
                    }
                }
            }
            Err(why) => tracing::warn!(%why, len = n, "netlink datagram ignored"),
        }
    }
}
