//! The real event source: the kernel's TCM-USER generic-netlink family via neli.

use super::datagram::pump;
use super::mcast::McastSocket;
use super::source::{EventSource, Replier, SendError};
use futures::future::LocalBoxFuture;
use neli::consts::nl::NlmF;
use neli::consts::socket::NlFamily;
use neli::err::RouterError;
use neli::nl::NlPayload;
use neli::router::asynchronous::{NlRouter, NlRouterReceiverHandle};
use neli::types::Buffer;
use neli::utils::Groups;
use std::rc::Rc;
use tcmud_core::netlink::{FAMILY_NAME, MCAST_GROUP};
use tokio::sync::mpsc;

/// Why the netlink source could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The generic-netlink socket could not be opened.
    #[error("cannot open a generic netlink socket: {0}")]
    Socket(String),
    /// The kernel has no TCM-USER family (target_core_user not loaded).
    #[error("generic netlink family {FAMILY_NAME} is missing (is target_core_user loaded?): {0}")]
    Family(String),
    /// The `config` multicast group could not be resolved or joined.
    #[error("cannot join multicast group {FAMILY_NAME}/{MCAST_GROUP}: {0}")]
    Group(String),
}

/// How long a send waits for the kernel's ACK.
const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

struct NlReplier {
    router: Rc<NlRouter>,
    family: u16,
}

impl Replier for NlReplier {
    fn send(&self, payload: Vec<u8>) -> LocalBoxFuture<'static, Result<(), SendError>> {
        let router = Rc::clone(&self.router);
        let family = self.family;
        Box::pin(async move {
            let mut acks: NlRouterReceiverHandle<u16, Buffer> = router
                .send::<u16, Buffer, u16, Buffer>(
                    family,
                    NlmF::ACK,
                    NlPayload::Payload(Buffer::from(payload)),
                )
                .await
                .map_err(|e| SendError(describe(&e)))?;
            // Never let a missing ACK hold a reply future for ever.
            match tokio::time::timeout(ACK_TIMEOUT, acks.next::<u16, Buffer>()).await {
                Err(_) => Err(SendError("no ACK from the kernel".into())),
                Ok(Some(Err(e))) => Err(SendError(describe(&e))),
                Ok(_) => Ok(()),
            }
        })
    }
}

/// A short description of a router error: the errno for kernel error replies.
fn describe<T, P>(e: &RouterError<T, P>) -> String
where
    RouterError<T, P>: std::fmt::Display,
{
    match e {
        RouterError::Nlmsgerr(m) => {
            let errno = m.error().abs();
            format!(
                "the kernel answered: {}",
                std::io::Error::from_raw_os_error(errno)
            )
        }
        other => other.to_string(),
    }
}

/// Connects, resolves `TCM-USER` and joins its `config` group. Must run inside the
/// actix System (a local task forwards multicast events).
pub async fn connect() -> Result<EventSource, NetlinkError> {
    let (router, _unused_mcast) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
        .await
        .map_err(|e| NetlinkError::Socket(e.to_string()))?;
    let family = router
        .resolve_genl_family(FAMILY_NAME)
        .await
        .map_err(|e| NetlinkError::Family(describe(&e)))?;
    let group = router
        .resolve_nl_mcast_group(FAMILY_NAME, MCAST_GROUP)
        .await
        .map_err(|e| NetlinkError::Group(describe(&e)))?;
    // Events are read on a socket of their own, with recvfrom: neli's router does not
    // report the sender's address, the only proof that a message comes from the kernel.
    let mcast = McastSocket::open(NlFamily::Generic, &[group])
        .map_err(|e| NetlinkError::Group(e.to_string()))?;
    tracing::info!(
        family,
        group,
        "listening on generic netlink {FAMILY_NAME}/{MCAST_GROUP}"
    );
    let (tx, events) = mpsc::channel(1024);
    actix::spawn(async move {
        if let Some(err) = pump(mcast, family, tx).await {
            tracing::error!(%err, "netlink receive failed");
        }
    });
    Ok(EventSource {
        events,
        replier: Box::new(NlReplier {
            router: Rc::new(router),
            family,
        }),
    })
}
