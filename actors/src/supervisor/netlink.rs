//! The real event source: the kernel's TCM-USER generic-netlink family via neli.

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
            match acks.next::<u16, Buffer>().await {
                Some(Err(e)) => Err(SendError(e.to_string())),
                _ => Ok(()),
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
    let (router, mut mcast) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
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
    router
        .add_mcast_membership(Groups::new_groups(&[group]))
        .map_err(|e| NetlinkError::Group(e.to_string()))?;
    tracing::info!(
        family,
        group,
        "listening on generic netlink {FAMILY_NAME}/{MCAST_GROUP}"
    );
    let (tx, events) = mpsc::channel(1024);
    actix::spawn(async move {
        loop {
            match mcast.next::<u16, Buffer>().await {
                Some(Ok(msg)) => {
                    if *msg.nl_type() != family {
                        continue;
                    }
                    if let NlPayload::Payload(p) = msg.nl_payload() {
                        if tx.send(p.as_ref().to_vec()).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(error = %e, "netlink receive failed");
                    break;
                }
                None => break,
            }
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
