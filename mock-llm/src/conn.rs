//! Per-connection control handle that lets request handlers act on the TCP
//! connection itself (RST, FIN, raw writes), which hyper's service API does
//! not expose.
//!
//! The accept loop keeps a `dup()` of every accepted socket here. Socket
//! options set through the duplicate (SO_LINGER) apply to the shared socket,
//! and the connection driver drops both descriptors when [`ConnCtl::killed`]
//! fires, so the socket is really closed at that point.

use std::net::{Shutdown, TcpStream};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use socket2::SockRef;
use tokio::sync::Notify;

/// Shared between the connection driver and the requests it serves.
pub struct ConnCtl {
    kill: Notify,
    raw: Mutex<Option<TcpStream>>,
}

impl ConnCtl {
    pub fn new(raw: TcpStream) -> Self {
        Self {
            kill: Notify::new(),
            raw: Mutex::new(Some(raw)),
        }
    }

    fn raw(&self) -> MutexGuard<'_, Option<TcpStream>> {
        // A poisoned lock only means another handler panicked; the socket
        // inside is still perfectly usable.
        self.raw.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Abort the connection with a TCP RST: SO_LINGER 0 makes the final
    /// close() discard unsent data and send RST instead of FIN.
    pub fn reset(&self) {
        if let Some(raw) = self.raw().as_ref() {
            let _ = SockRef::from(raw).set_linger(Some(Duration::ZERO));
        }
        self.kill.notify_one();
    }

    /// Close the connection with a FIN, whatever hyper was in the middle of.
    pub fn close(&self) {
        if let Some(raw) = self.raw().as_ref() {
            let _ = raw.shutdown(Shutdown::Write);
        }
        self.kill.notify_one();
    }

    /// Ask the driver to drop the connection without touching the socket
    /// (used after a raw writer has already shut it down).
    pub fn kill(&self) {
        self.kill.notify_one();
    }

    /// Take the duplicate descriptor to write a response by hand.
    pub fn take_raw(&self) -> Option<TcpStream> {
        self.raw().take()
    }

    /// Resolves once a handler asked for the connection to be torn down.
    pub async fn killed(&self) {
        self.kill.notified().await;
    }

    /// Drop the duplicate descriptor; must be called when the connection ends
    /// or the socket would stay open.
    pub fn release(&self) {
        drop(self.raw().take());
    }
}
