//! What wakes a device actor: a kick from the kernel on the uio fd (tokio
//! `AsyncFd`, no polling loop) or a finished command / control request
//! (a `Notify` in the shared state).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use futures::stream::{self, Stream, StreamExt};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::shared::DeviceShared;

/// Why the actor was woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The event fd became readable (the kernel queued commands).
    Kick,
    /// Something in the shared state changed (a result, a stop, a failure).
    Notified,
    /// Waiting on the event fd failed; only notifications remain.
    FdError,
}

/// The merged wake-up stream over a duplicate of the ring's event fd.
pub(crate) fn wake_stream(
    event_fd: OwnedFd,
    shared: Arc<DeviceShared>,
) -> std::io::Result<impl Stream<Item = Wake>> {
    // The safe constructors are deprecated in favour of `unsafe register*`
    // (tokio#8587: a borrowed raw fd could be closed under the reactor). We
    // hand over an `OwnedFd`, which stays open exactly as long as the
    // `AsyncFd`, so the deprecated safe form is sound here and keeps this
    // crate free of `unsafe`.
    #[allow(deprecated)]
    let afd = AsyncFd::with_interest(event_fd, Interest::READABLE)?;
    let kicks = stream::unfold(Some(afd), |afd| async move {
        let afd = afd?;
        match afd.readable().await {
            Ok(mut guard) => {
                // The actor drains the counter and fetches everything up to
                // cmd_head after this; a kick after this clear re-arms us.
                guard.clear_ready();
                drop(guard);
                Some((Wake::Kick, Some(afd)))
            }
            Err(e) => {
                tracing::error!(error = %e, "waiting on the uio fd failed");
                Some((Wake::FdError, None))
            }
        }
    });
    let notes = stream::unfold(shared, |shared| async move {
        shared.wake.notified().await;
        Some((Wake::Notified, shared))
    });
    Ok(stream::select(kicks.boxed_local(), notes.boxed_local()))
}
