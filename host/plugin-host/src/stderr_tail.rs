//! The plugin's stderr, kept only to explain a crash (a Rust panic prints its message there): a
//! ring buffer of the last bytes written. Writes always succeed, so a chatty plugin never fails
//! (nor panics) on a full buffer, and the message just before a crash is the one kept.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Shared by the WASI context (which writes) and the host (which reads the tail).
#[derive(Clone)]
pub struct StderrTail {
    kept: Arc<Mutex<Tail>>,
}

struct Tail {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// Bytes written in all, kept or not.
    written: u64,
}

impl StderrTail {
    /// Keeps the last `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self {
            kept: Arc::new(Mutex::new(Tail {
                bytes: VecDeque::with_capacity(capacity.min(4096)),
                capacity,
                written: 0,
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut tail = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        tail.written += data.len() as u64;
        let capacity = tail.capacity;
        let data = &data[data.len().saturating_sub(capacity)..];
        let overflow = (tail.bytes.len() + data.len()).saturating_sub(capacity);
        tail.bytes.drain(..overflow);
        tail.bytes.extend(data);
    }

    /// The bytes kept (the last ones written).
    pub fn contents(&self) -> Vec<u8> {
        let tail = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        tail.bytes.iter().copied().collect()
    }

    /// How many bytes the plugin wrote in all; a mark to tell what it wrote after a moment.
    pub fn written(&self) -> u64 {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).written
    }

    /// What was written after `mark` (a [`Self::written`] value), as far as it is still kept.
    pub fn since(&self, mark: u64) -> Vec<u8> {
        let tail = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let new = usize::try_from(tail.written - mark.min(tail.written)).unwrap_or(usize::MAX);
        let skip = tail.bytes.len().saturating_sub(new);
        tail.bytes.iter().skip(skip).copied().collect()
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_bytes_and_counts_all() {
        let tail = StderrTail::new(8);
        tail.push(b"hello ");
        let mark = tail.written();
        tail.push(b"world, again");
        assert_eq!(tail.contents(), b"d, again");
        assert_eq!(tail.written(), 18);
        assert_eq!(tail.since(mark), b"d, again", "only what is still kept");
        tail.push(b"!");
        assert_eq!(tail.contents(), b", again!");
        assert_eq!(tail.since(tail.written() - 1), b"!");
        // One write larger than the buffer keeps its end.
        tail.push(&[b'x'; 100]);
        assert_eq!(tail.contents(), [b'x'; 8]);
    }
}
