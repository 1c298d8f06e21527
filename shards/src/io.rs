//! One stream type for every connection a shard holds: plain TCP or TLS, client-facing or
//! upstream. Reads append into the spare capacity of a reused `Vec`, writes take the buffer
//! and hand it back (io_uring owns buffers while an operation is in flight).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{
    AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent,
};
use monoio::net::TcpStream;

/// Smallest free space offered to one read.
const MIN_READ_ROOM: usize = 4096;

pub struct Stream {
    inner: Inner,
    /// The TCP socket underneath, kept because monoio-rustls hides its inner stream.
    fd: RawFd,
}

enum Inner {
    Plain(TcpStream),
    ClientTls(Box<monoio_rustls::ClientTlsStream<TcpStream>>),
    ServerTls(Box<monoio_rustls::ServerTlsStream<TcpStream>>),
}

impl Stream {
    pub fn plain(tcp: TcpStream) -> Self {
        let fd = tcp.as_raw_fd();
        Self {
            inner: Inner::Plain(tcp),
            fd,
        }
    }

    pub fn client_tls(tls: monoio_rustls::ClientTlsStream<TcpStream>, fd: RawFd) -> Self {
        Self {
            inner: Inner::ClientTls(Box::new(tls)),
            fd,
        }
    }

    pub fn server_tls(tls: monoio_rustls::ServerTlsStream<TcpStream>, fd: RawFd) -> Self {
        Self {
            inner: Inner::ServerTls(Box::new(tls)),
            fd,
        }
    }

    /// Reads once, appending to `buf`. `Ok(0)` is end of stream.
    pub async fn read_into(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let slice = read_room(buf);
        // TLS reads are boxed: monoio-rustls's read future is ~720 bytes, and held inline
        // it would make this future (and every future that awaits it, up to the
        // connection's task) that much larger for plain TCP too, copied at every await.
        let (res, slice) = match &mut self.inner {
            Inner::Plain(s) => s.read(slice).await,
            Inner::ClientTls(s) => Box::pin(s.read(slice)).await,
            Inner::ServerTls(s) => Box::pin(s.read(slice)).await,
        };
        *buf = slice.into_inner();
        res
    }

    /// Plain TCP: [`Self::read_into_cancelable`] and [`Self::readable`] work on it.
    pub fn is_plain(&self) -> bool {
        matches!(self.inner, Inner::Plain(_))
    }

    /// [`Self::read_into`] that `cancel` can stop: then `Err` with `ECANCELED`, unless the
    /// read completed first, whose bytes are kept. Plain streams only (`Unsupported` on TLS,
    /// whose read futures would make this one's, and every connection's task, larger).
    pub async fn read_into_cancelable(
        &mut self,
        buf: &mut Vec<u8>,
        cancel: CancelHandle,
    ) -> io::Result<usize> {
        let Inner::Plain(tcp) = &mut self.inner else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        let (res, slice) = tcp.cancelable_read(read_room(buf), cancel).await;
        *buf = slice.into_inner();
        res
    }

    /// Waits until the stream has bytes to read (or is closed), holding no buffer (a poll
    /// on the ring). Plain streams only, like [`Self::read_into_cancelable`]: a TLS
    /// library may hold decrypted bytes that the socket's readiness does not show.
    pub async fn readable(&self) -> io::Result<()> {
        let Inner::Plain(tcp) = &self.inner else {
            return Err(io::ErrorKind::Unsupported.into());
        };
        // Relaxed: the epoll fallback may wake early, and the read after it then waits.
        tcp.readable(true).await
    }

    /// Writes `buf[from..]` whole and returns the buffer for reuse.
    pub async fn write_all_from(&mut self, buf: Vec<u8>, from: usize) -> (io::Result<()>, Vec<u8>) {
        let end = buf.len();
        let slice = buf.slice(from..end);
        // TLS boxed, as in `read_into`.
        let (res, slice) = match &mut self.inner {
            Inner::Plain(s) => s.write_all(slice).await,
            Inner::ClientTls(s) => Box::pin(write_flush(s.as_mut(), slice)).await,
            Inner::ServerTls(s) => Box::pin(write_flush(s.as_mut(), slice)).await,
        };
        (res.map(|_| ()), slice.into_inner())
    }

    pub async fn write_all(&mut self, buf: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        self.write_all_from(buf, 0).await
    }

    /// The TCP socket underneath, for liveness checks.
    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }

    pub async fn shutdown(&mut self) {
        // TLS boxed, as in `read_into`.
        let _ = match &mut self.inner {
            Inner::Plain(s) => s.shutdown().await,
            Inner::ClientTls(s) => Box::pin(s.shutdown()).await,
            Inner::ServerTls(s) => Box::pin(s.shutdown()).await,
        };
    }
}

async fn write_flush<W: AsyncWriteRent, T: IoBuf + 'static>(
    w: &mut W,
    buf: T,
) -> monoio::BufResult<usize, T> {
    let (res, buf) = w.write_all(buf).await;
    match res {
        Ok(n) => (w.flush().await.map(|()| n), buf),
        Err(e) => (Err(e), buf),
    }
}

/// `buf`'s free space (at least [`MIN_READ_ROOM`]) for one read to append into.
fn read_room(buf: &mut Vec<u8>) -> monoio::buf::SliceMut<Vec<u8>> {
    if buf.capacity() - buf.len() < MIN_READ_ROOM {
        buf.reserve(MIN_READ_ROOM);
    }
    let len = buf.len();
    let cap = buf.capacity();
    std::mem::take(buf).slice_mut(len..cap)
}

/// True when the peer has closed or reset the connection. Checks without consuming data:
/// a client that pipelines its next request is still there.
pub fn peer_gone(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call; timeout 0 never blocks.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Why a watched read returned no data.
#[derive(Debug)]
pub enum WaitError {
    Io(io::Error),
    Timeout,
    ClientGone,
}

/// Reads once from `upstream` within `timeout`, checking every `check` that the client
/// (`client_fd`) is still connected. The read stays in flight across checks, so no upstream
/// byte is lost; it is dropped only together with the upstream connection. The time it took
/// is added to `waited` (the request's time waiting on its provider).
pub async fn read_watching(
    upstream: &mut Stream,
    buf: &mut Vec<u8>,
    client_fd: RawFd,
    (timeout, check): (Duration, Duration),
    waited: &mut Duration,
) -> Result<usize, WaitError> {
    let start = crate::poll_clock::now_exact();
    let result = read_within(upstream, buf, client_fd, (start, timeout), check).await;
    *waited += crate::poll_clock::now_exact().saturating_duration_since(start);
    result
}

/// `(start, timeout)`: the read may take until `start + timeout`; `start` was just read, and
/// serves as the first check's now (a clock read less per read, docs/perf.md).
async fn read_within(
    upstream: &mut Stream,
    buf: &mut Vec<u8>,
    client_fd: RawFd,
    (start, timeout): (Instant, Duration),
    check: Duration,
) -> Result<usize, WaitError> {
    let deadline = start + timeout;
    let read = upstream.read_into(buf);
    let mut read = std::pin::pin!(read);
    let mut now = start;
    loop {
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return Err(WaitError::Timeout);
        }
        // Biased: the read is polled first, so a read that is already done returns without
        // a draw from the runtime's RNG and without arming the check's timer; the timer's
        // deadline comes from `now`, not from another clock read (`sleep` reads the clock).
        monoio::select! {
            biased;
            r = &mut read => return r.map_err(WaitError::Io),
            () = crate::timer::sleep_until(now + left.min(check)) => {}
        }
        if peer_gone(client_fd) {
            return Err(WaitError::ClientGone);
        }
        now = Instant::now();
    }
}
