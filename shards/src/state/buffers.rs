//! A shard's spare byte buffers, lent to one request at a time so that idle keep-alive
//! connections hold none. Single-threaded (one shard), so a `RefCell`.

/// A shard's spare byte buffers, reused by its requests so that idle connections hold none.
#[derive(Debug, Default)]
pub struct BufferPool {
    free: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// Buffers kept for reuse at most (more are freed).
    const MAX_FREE: usize = 1024;
    /// Buffers that grew larger than this are freed rather than kept.
    const MAX_KEPT_CAPACITY: usize = 64 * 1024;

    pub fn take(&self) -> Vec<u8> {
        self.free.borrow_mut().pop().unwrap_or_default()
    }

    pub fn put(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 || buf.capacity() > Self::MAX_KEPT_CAPACITY {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < Self::MAX_FREE {
            buf.clear();
            free.push(buf);
        }
    }
}
