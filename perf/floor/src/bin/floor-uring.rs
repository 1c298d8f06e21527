//! The floor of a proxy hop on io_uring at its best, without a runtime: the byte relay of
//! `floor-proxy`, written straight on the ring with what monoio 0.2 does not use — a ring
//! created `SINGLE_ISSUER | DEFER_TASKRUN`, multishot accept, multishot receive into a
//! registered buffer ring (no receive is re-armed per piece, no buffer is held by an idle
//! connection), registered (fixed) files for every receive and send (no file lookup per
//! operation), and sends with `MSG_WAITALL`. Set against `floor-proxy` (`perf/ab.sh`, sides
//! `floor-uring` and `floor`), it prices a runtime that used them: what ringgate would gain
//! from a fork of monoio at most (docs/perf.md, "The floor").
//!
//! `FLOOR_URING_WITHOUT` (a comma-separated list of `defer`, `fixed`, `multishot`) turns
//! features off one by one, to price each: the ring then runs `COOP_TASKRUN` as a shard's
//! does, operations name sockets by descriptor, or each receive is armed once per piece.
//!
//! Usage: floor-uring LISTEN UPSTREAM; pin it with taskset. It serves until killed. Each
//! client connection gets its own upstream connection (a blocking connect at accept: the
//! load generator's connections are opened during its warm-up, not measured).

use std::collections::VecDeque;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bytes a piece may hold: a shard's read buffer size.
const PIECE: usize = 4096;
/// Buffers in the ring shared by every receive (a power of two).
const BUFFERS: u16 = 4096;
/// The buffer group of that ring.
const GROUP: u16 = 0;
/// Registered file slots: two per connection.
const SLOTS: u32 = 8192;

/// What a completion is for, in its `user_data`: the kind in bits 0–1, the direction in
/// bit 2, the connection in bits 3–31 and a send's buffer in bits 32–47.
#[derive(Clone, Copy)]
enum Kind {
    Accept = 0,
    Recv = 1,
    Send = 2,
}

fn tag(kind: Kind, conn: usize, dir: usize, buffer: u16) -> u64 {
    kind as u64 | (dir as u64) << 2 | (conn as u64) << 3 | u64::from(buffer) << 32
}

/// Direction 0: client to upstream; 1: upstream to client.
struct Conn {
    /// The client's and the upstream's sockets (slot `2 * index + dir` each).
    sockets: [TcpStream; 2],
    /// Pieces received in each direction and not sent yet: (buffer, length).
    waiting: [VecDeque<(u16, u32)>; 2],
    sending: [bool; 2],
    /// Operations the ring still holds for this connection.
    in_flight: u32,
    open: bool,
}

/// The registered ring of provided buffers and the memory its entries point into.
struct Buffers {
    entries: *mut types::BufRingEntry,
    memory: Vec<u8>,
    tail: u16,
}

impl Buffers {
    fn new(ring: &IoUring) -> io::Result<Self> {
        let bytes = usize::from(BUFFERS) * std::mem::size_of::<types::BufRingEntry>();
        let layout = std::alloc::Layout::from_size_align(bytes, 4096).expect("layout");
        // SAFETY: a non-zero size; the memory lives as long as the process (the ring's
        // registration refers to it until the ring is closed at exit).
        let entries = unsafe { std::alloc::alloc_zeroed(layout) } as *mut types::BufRingEntry;
        // SAFETY: `entries` is page-aligned and holds BUFFERS entries, never freed.
        unsafe {
            ring.submitter()
                .register_buf_ring(entries as u64, BUFFERS, GROUP)?
        };
        let mut buffers = Buffers {
            entries,
            memory: vec![0u8; usize::from(BUFFERS) * PIECE],
            tail: 0,
        };
        for id in 0..BUFFERS {
            buffers.give_back(id);
        }
        Ok(buffers)
    }

    fn address(&self, id: u16) -> *const u8 {
        self.memory[usize::from(id) * PIECE..].as_ptr()
    }

    /// Puts buffer `id` at the ring's tail, for the kernel to fill again.
    fn give_back(&mut self, id: u16) {
        let at = usize::from(self.tail & (BUFFERS - 1));
        let address = self.address(id) as u64;
        // SAFETY: `at` < BUFFERS; the kernel reads only entries before the published tail.
        unsafe {
            let entry = &mut *self.entries.add(at);
            entry.set_addr(address);
            entry.set_len(PIECE as u32);
            entry.set_bid(id);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field of the ring's first entry, published with release order so
        // that the entry written above is seen before it.
        unsafe {
            let tail =
                types::BufRingEntry::tail(self.entries) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

/// Which of io_uring's features the floor uses (all, unless `FLOOR_URING_WITHOUT` names some).
struct Features {
    defer: bool,
    fixed: bool,
    multishot: bool,
}

impl Features {
    fn from_env() -> Self {
        let without = std::env::var("FLOOR_URING_WITHOUT").unwrap_or_default();
        let off: Vec<&str> = without.split(',').map(str::trim).collect();
        for name in off.iter().filter(|n| !n.is_empty()) {
            assert!(
                ["defer", "fixed", "multishot"].contains(name),
                "FLOOR_URING_WITHOUT: unknown feature {name}"
            );
        }
        Features {
            defer: !off.contains(&"defer"),
            fixed: !off.contains(&"fixed"),
            multishot: !off.contains(&"multishot"),
        }
    }
}

/// `$make` applied to connection `$index`'s socket `$side` as the floor names sockets: its
/// registered slot, or its descriptor (the two are different types to the ring's builders).
macro_rules! socket {
    ($floor:expr, $index:expr, $side:expr, $make:expr) => {{
        let (index, side) = ($index, $side);
        if $floor.features.fixed {
            $make(types::Fixed((2 * index + side) as u32))
        } else {
            let conn = $floor.conns[index].as_ref().expect("an open connection");
            $make(types::Fd(conn.sockets[side].as_raw_fd()))
        }
    }};
}

struct Floor {
    listener: std::net::TcpListener,
    features: Features,
    ring: IoUring,
    buffers: Buffers,
    conns: Vec<Option<Conn>>,
    upstream: SocketAddr,
}

fn main() -> io::Result<()> {
    let (listener, upstream) = floor_proxy::listener_and_upstream("floor-uring");
    let features = Features::from_env();
    let mut builder = IoUring::builder();
    if features.defer {
        builder.setup_single_issuer().setup_defer_taskrun();
    } else {
        builder.setup_coop_taskrun();
    }
    let ring = builder.build(4096)?;
    ring.submitter().register_files_sparse(SLOTS)?;
    let buffers = Buffers::new(&ring)?;
    let mut floor = Floor {
        listener,
        features,
        ring,
        buffers,
        conns: Vec::new(),
        upstream,
    };
    floor.arm_accept()?;
    // The completions of one wait, taken off the ring before they are handled (handling
    // submits); the vector is kept, so that the loop allocates nothing per turn.
    let mut done: Vec<cqueue::Entry> = Vec::with_capacity(4096);
    loop {
        floor.ring.submit_and_wait(1)?;
        done.extend(floor.ring.completion());
        for cqe in done.drain(..) {
            floor.complete(&cqe)?;
        }
    }
}

impl Floor {
    fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        // SAFETY: every buffer an entry points to (the buffer ring's memory) outlives it.
        while unsafe { self.ring.submission().push(sqe) }.is_err() {
            self.ring.submit()?;
        }
        Ok(())
    }

    /// A multishot accept on the listener (armed again should the kernel end it).
    fn arm_accept(&mut self) -> io::Result<()> {
        let sqe = opcode::AcceptMulti::new(types::Fd(self.listener.as_raw_fd()))
            .build()
            .user_data(tag(Kind::Accept, 0, 0, 0));
        self.push(&sqe)
    }

    fn complete(&mut self, cqe: &cqueue::Entry) -> io::Result<()> {
        let data = cqe.user_data();
        let (conn, dir) = ((data >> 3 & 0x1fff_ffff) as usize, (data >> 2 & 1) as usize);
        match data & 3 {
            k if k == Kind::Accept as u64 => {
                if !cqueue::more(cqe.flags()) {
                    self.arm_accept()?;
                }
                self.accepted(cqe.result())
            }
            k if k == Kind::Recv as u64 => self.received(conn, dir, cqe),
            _ => self.sent(conn, dir, (data >> 32) as u16, cqe.result()),
        }
    }

    fn accepted(&mut self, fd: i32) -> io::Result<()> {
        if fd < 0 {
            return Ok(());
        }
        // SAFETY: a descriptor the accept just created, owned from here on.
        let client = unsafe { TcpStream::from_raw_fd(fd) };
        let Ok(upstream) = TcpStream::connect(self.upstream) else {
            return Ok(());
        };
        for s in [&client, &upstream] {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
        }
        let index = match self.conns.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        assert!(
            (index as u32) < SLOTS / 2,
            "more connections than file slots"
        );
        // Without fixed files the slots stay empty: that variant pays no registration.
        if self.features.fixed {
            self.ring.submitter().register_files_update(
                2 * index as u32,
                &[client.as_raw_fd(), upstream.as_raw_fd()],
            )?;
        }
        self.conns[index] = Some(Conn {
            sockets: [client, upstream],
            waiting: [VecDeque::new(), VecDeque::new()],
            sending: [false; 2],
            in_flight: 0,
            open: true,
        });
        self.arm(index, 0)?;
        self.arm(index, 1)
    }

    /// A multishot receive on direction `dir`'s source socket.
    fn arm(&mut self, index: usize, dir: usize) -> io::Result<()> {
        let conn = self.conns[index].as_mut().expect("an open connection");
        conn.in_flight += 1;
        let sqe = if self.features.multishot {
            socket!(self, index, dir, |s| opcode::RecvMulti::new(s, GROUP)
                .build())
        } else {
            socket!(self, index, dir, |s| opcode::Recv::new(
                s,
                std::ptr::null_mut(),
                PIECE as u32
            )
            .buf_group(GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT))
        };
        self.push(&sqe.user_data(tag(Kind::Recv, index, dir, 0)))
    }

    fn received(&mut self, index: usize, dir: usize, cqe: &cqueue::Entry) -> io::Result<()> {
        let more = cqueue::more(cqe.flags());
        let buffer = cqueue::buffer_select(cqe.flags());
        let conn = self.conns[index]
            .as_mut()
            .expect("a connection with an operation");
        if !more {
            conn.in_flight -= 1;
        }
        let n = cqe.result();
        if n > 0 && conn.open {
            let id = buffer.expect("a multishot receive picks a buffer");
            conn.waiting[dir].push_back((id, n as u32));
            self.send_next(index, dir)?;
        } else {
            if let Some(id) = buffer {
                self.buffers.give_back(id);
            }
            // -ENOBUFS ends a multishot receive with the socket still good: every buffer
            // was waiting to be sent (never under the load this floor is measured with).
            if n != -libc::ENOBUFS || !self.conns[index].as_ref().is_some_and(|c| c.open) {
                self.close(index);
            }
        }
        if !more && self.conns[index].as_ref().is_some_and(|c| c.open) {
            self.arm(index, dir)?;
        }
        self.release_if_done(index);
        Ok(())
    }

    /// Sends direction `dir`'s next waiting piece unless one is being sent (one send at a
    /// time per direction keeps the pieces in order).
    fn send_next(&mut self, index: usize, dir: usize) -> io::Result<()> {
        let conn = self.conns[index].as_mut().expect("an open connection");
        if conn.sending[dir] {
            return Ok(());
        }
        let Some(&(id, len)) = conn.waiting[dir].front() else {
            return Ok(());
        };
        conn.sending[dir] = true;
        conn.in_flight += 1;
        let address = self.buffers.address(id);
        let sqe = socket!(self, index, 1 - dir, |s| opcode::Send::new(s, address, len)
            .flags(libc::MSG_WAITALL | libc::MSG_NOSIGNAL)
            .build());
        self.push(&sqe.user_data(tag(Kind::Send, index, dir, id)))
    }

    fn sent(&mut self, index: usize, dir: usize, id: u16, result: i32) -> io::Result<()> {
        let conn = self.conns[index]
            .as_mut()
            .expect("a connection with an operation");
        conn.in_flight -= 1;
        conn.sending[dir] = false;
        conn.waiting[dir].pop_front();
        self.buffers.give_back(id);
        if result < 0 {
            self.close(index);
        } else if conn.open {
            self.send_next(index, dir)?;
        }
        self.release_if_done(index);
        Ok(())
    }

    /// Shuts both sockets: the ring's receives on them end, and waiting pieces are dropped.
    fn close(&mut self, index: usize) {
        let Some(conn) = self.conns[index].as_mut() else {
            return;
        };
        if !conn.open {
            return;
        }
        conn.open = false;
        for s in &conn.sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
        let mut dropped = Vec::new();
        for (dir, waiting) in conn.waiting.iter_mut().enumerate() {
            // The piece being sent is given back when its send completes.
            let keep = usize::from(conn.sending[dir]);
            dropped.extend(waiting.drain(keep..).map(|(id, _)| id));
        }
        for id in dropped {
            self.buffers.give_back(id);
        }
    }

    /// Frees a closed connection's slots and sockets once the ring holds nothing of it.
    fn release_if_done(&mut self, index: usize) {
        if self.conns[index]
            .as_ref()
            .is_some_and(|c| !c.open && c.in_flight == 0)
        {
            if self.features.fixed {
                let _ = self
                    .ring
                    .submitter()
                    .register_files_update(2 * index as u32, &[-1, -1]);
            }
            self.conns[index] = None;
        }
    }
}
