//! Where kernel events come from and where replies go: netlink for real, channels in tests.

use futures::future::LocalBoxFuture;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// A failed send on the event source.
#[derive(Debug, Clone, thiserror::Error)]
#[error("netlink send failed: {0}")]
pub struct SendError(pub String);

/// Sends genl payloads (`*_DONE`, `SET_FEATURES`) to the kernel.
pub trait Replier {
    /// Sends one genl payload (genl header + attributes).
    fn send(&self, payload: Vec<u8>) -> LocalBoxFuture<'static, Result<(), SendError>>;
}

/// What the event source delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// The genl payload (genl header + attributes) of one kernel event.
    Event(Vec<u8>),
    /// The socket's receive buffer overran (ENOBUFS): events were lost, rescan now.
    Overrun,
}

/// A connected event source: kernel events in, replies out.
pub struct EventSource {
    /// Kernel multicast events (and overruns), in arrival order.
    pub events: mpsc::Receiver<SourceEvent>,
    /// The reply path.
    pub replier: Box<dyn Replier>,
}

/// Test source: events pushed through a channel, replies captured.
#[derive(Clone)]
pub struct FakeSource {
    tx: mpsc::Sender<SourceEvent>,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

struct FakeReplier {
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Replier for FakeReplier {
    fn send(&self, payload: Vec<u8>) -> LocalBoxFuture<'static, Result<(), SendError>> {
        let sent = Arc::clone(&self.sent);
        Box::pin(async move {
            sent.lock()
                .map_err(|_| SendError("fake replier poisoned".into()))?
                .push(payload);
            Ok(())
        })
    }
}

impl FakeSource {
    /// A fake source and the [`EventSource`] to hand to the supervisor.
    pub fn new() -> (FakeSource, EventSource) {
        let (tx, events) = mpsc::channel(1024);
        let sent = Arc::new(Mutex::new(Vec::new()));
        let src = EventSource {
            events,
            replier: Box::new(FakeReplier {
                sent: Arc::clone(&sent),
            }),
        };
        (FakeSource { tx, sent }, src)
    }

    /// Delivers one genl payload as if the kernel had multicast it.
    pub async fn push(&self, payload: Vec<u8>) {
        let _ = self.tx.send(SourceEvent::Event(payload)).await;
    }

    /// Reports a receive buffer overrun, as the real source does on ENOBUFS.
    pub async fn overrun(&self) {
        let _ = self.tx.send(SourceEvent::Overrun).await;
    }

    /// Everything the supervisor sent so far (genl payloads).
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.sent.lock().map(|v| v.clone()).unwrap_or_default()
    }
}
