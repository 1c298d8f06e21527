//! Waiting for a client's next request without holding a buffer for it.
//!
//! A read on io_uring owns its buffer until it completes, so a read posted on a silent
//! keep-alive connection holds the connection's 4 KiB input buffer for as long as the
//! client is silent: 1,000 idle connections held ~4 MB (docs/perf.md). Here a connection
//! whose next request comes within [`LINGER`] is read as before, one operation; past that,
//! the read is cancelled (a read that completed meanwhile keeps its bytes), the buffer is
//! freed, and the connection waits for readiness alone (a poll on the ring, no buffer),
//! then reads. A connection that went idle starts its next waits with the poll (one
//! operation more than a read, and no cancel) until a request comes within `LINGER` again,
//! so busy connections never pay for this and slow ones pay one operation a request.
//!
//! TLS connections read as before: their library may hold decrypted bytes that a readiness
//! wait would not see.

use std::io;
use std::time::Duration;

use monoio::io::Canceller;

use crate::io::Stream;
use crate::timer::{self, Elapsed};

/// How long a connection waits for its next request with a read (and its buffer) posted.
pub const LINGER: Duration = Duration::from_millis(50);

/// A client connection's way of waiting for its next request.
#[derive(Default)]
pub struct IdleWait {
    canceller: Canceller,
    /// The last wait outlasted [`LINGER`]: wait for readiness first.
    slow: bool,
}

impl IdleWait {
    /// Reads the first bytes of the connection's next request, appending to `buf`, within
    /// `idle` (else `TimedOut`). `Ok(0)`: the client closed the connection.
    pub async fn read(
        &mut self,
        stream: &mut Stream,
        buf: &mut Vec<u8>,
        idle: Duration,
    ) -> io::Result<usize> {
        if !stream.is_plain() || idle <= LINGER {
            return io_result(timer::timeout(idle, stream.read_into(buf)).await);
        }
        if self.slow {
            return self.read_when_ready(stream, buf, idle).await;
        }
        let res = {
            let read = stream.read_into_cancelable(buf, self.canceller.handle());
            let mut read = std::pin::pin!(read);
            match timer::timeout(LINGER, read.as_mut()).await {
                Ok(res) => res,
                Err(Elapsed) => {
                    self.canceller = std::mem::take(&mut self.canceller).cancel();
                    read.await
                }
            }
        };
        match res {
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => {}
            done => return done,
        }
        self.slow = true;
        self.read_when_ready(stream, buf, idle - LINGER).await
    }

    /// Frees `buf` while the client is silent, waits for readiness, then reads.
    async fn read_when_ready(
        &mut self,
        stream: &mut Stream,
        buf: &mut Vec<u8>,
        idle: Duration,
    ) -> io::Result<usize> {
        if buf.is_empty() {
            *buf = Vec::new();
        }
        let started = crate::poll_clock::now();
        io_result(timer::timeout(idle, stream.readable()).await)?;
        self.slow = crate::poll_clock::elapsed(started) >= LINGER;
        // Bounded too: the epoll fallback's readiness may be a false alarm.
        io_result(timer::timeout(idle, stream.read_into(buf)).await)
    }
}

/// A [`timer::timeout`]'s result as an I/O result: running out is `TimedOut`. (Not an async
/// fn taking the future: that would hold it twice, as argument and pinned, in every
/// connection's task.)
fn io_result<T>(waited: Result<io::Result<T>, Elapsed>) -> io::Result<T> {
    waited.unwrap_or_else(|Elapsed| Err(io::ErrorKind::TimedOut.into()))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::time::Duration;

    use super::*;

    /// Runs `server` on a connection accepted from a client thread running `client`, on
    /// each of the shard's drivers (io_uring first: its cancel is the one that races).
    fn on_each_driver<C, S, F>(client: C, server: S)
    where
        C: Fn(std::net::TcpStream) + Send + Sync + Clone + 'static,
        S: Fn(Stream) -> F + Clone,
        F: std::future::Future<Output = ()>,
    {
        let run = |server: S, client: C| async move {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let peer = std::thread::spawn(move || {
                let stream = std::net::TcpStream::connect(addr).expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                client(stream);
            });
            let (tcp, _) = listener.accept().await.expect("accept");
            server(Stream::plain(tcp)).await;
            peer.join().expect("client thread");
        };
        monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .expect("io_uring runtime")
            .block_on(run(server.clone(), client.clone()));
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("epoll runtime")
            .block_on(run(server, client));
    }

    #[test]
    fn a_quick_request_is_read_at_once() {
        on_each_driver(
            |mut c| c.write_all(b"GET").expect("send"),
            |mut stream| async move {
                let mut wait = IdleWait::default();
                let mut buf = Vec::new();
                let n = wait
                    .read(&mut stream, &mut buf, Duration::from_secs(5))
                    .await;
                assert_eq!(n.expect("read"), 3);
                assert_eq!(buf, b"GET");
            },
        );
    }

    #[test]
    fn a_request_after_the_linger_is_read_whole_and_the_next_quick_one_too() {
        on_each_driver(
            |mut c| {
                std::thread::sleep(LINGER * 3);
                c.write_all(b"late").expect("send");
                let mut ack = [0u8; 1];
                c.read_exact(&mut ack).expect("ack");
                c.write_all(b"soon").expect("send");
            },
            |mut stream| async move {
                let mut wait = IdleWait::default();
                let mut buf = Vec::new();
                let idle = Duration::from_secs(5);
                assert_eq!(
                    wait.read(&mut stream, &mut buf, idle).await.expect("read"),
                    4
                );
                assert_eq!(buf, b"late");
                assert!(
                    wait.slow,
                    "a wait past the linger makes the next wait poll first"
                );
                buf.clear();
                let (sent, _) = stream.write_all(b"!".to_vec()).await;
                sent.expect("ack");
                assert_eq!(
                    wait.read(&mut stream, &mut buf, idle).await.expect("read"),
                    4
                );
                assert_eq!(buf, b"soon");
                assert!(
                    !wait.slow,
                    "a quick request makes the next wait read at once"
                );
            },
        );
    }

    #[test]
    fn requests_racing_the_linger_lose_no_byte() {
        const ROUNDS: u8 = 24;
        on_each_driver(
            |mut c| {
                for i in 0..ROUNDS {
                    // Around the linger's end: from 3 ms before to 3 ms after.
                    let jitter = Duration::from_micros(250 * u64::from(i));
                    std::thread::sleep(LINGER - Duration::from_millis(3) + jitter);
                    c.write_all(&[i]).expect("send");
                    let mut ack = [0u8; 1];
                    c.read_exact(&mut ack).expect("ack");
                }
            },
            |mut stream| async move {
                let mut wait = IdleWait::default();
                let mut buf = Vec::new();
                for i in 0..ROUNDS {
                    buf.clear();
                    let n = wait
                        .read(&mut stream, &mut buf, Duration::from_secs(5))
                        .await
                        .expect("read");
                    assert_eq!((n, buf.as_slice()), (1, &[i][..]), "round {i}");
                    let (sent, _) = stream.write_all(vec![i]).await;
                    sent.expect("ack");
                }
            },
        );
    }

    #[test]
    fn a_silent_client_times_out_and_a_closing_one_reads_end_of_stream() {
        on_each_driver(
            |c| {
                // Silent past the server's idle timeout, then gone.
                std::thread::sleep(Duration::from_millis(250));
                drop(c);
            },
            |mut stream| async move {
                let mut wait = IdleWait::default();
                let mut buf = Vec::new();
                let err = wait
                    .read(&mut stream, &mut buf, LINGER * 2)
                    .await
                    .expect_err("idle timeout");
                assert_eq!(err.kind(), io::ErrorKind::TimedOut);
                assert_eq!(buf.capacity(), 0, "an idle connection holds no buffer");
                let n = wait
                    .read(&mut stream, &mut buf, Duration::from_secs(5))
                    .await;
                assert_eq!(n.expect("end of stream"), 0);
            },
        );
    }
}
