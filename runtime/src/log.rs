//! The run's log: the article's `log` calls and whatever it writes to stdout and stderr,
//! in order, cut at a size cap. Writes past the cap are accepted and dropped (so a chatty
//! `println!` never fails and panics the guest); the log says that it was cut.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi_io::bytes::Bytes;

/// Shared between the store (for `log`) and the stdout/stderr streams.
#[derive(Clone)]
pub struct LogBuffer {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    bytes: Vec<u8>,
    cap: usize,
    dropped: u64,
}

impl LogBuffer {
    pub fn new(cap: usize) -> LogBuffer {
        LogBuffer { inner: Arc::new(Mutex::new(Inner { bytes: Vec::new(), cap, dropped: 0 })) }
    }

    /// Append raw bytes (stdout/stderr), as far as the cap allows.
    pub fn write(&self, data: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let room = inner.cap.saturating_sub(inner.bytes.len());
        let take = room.min(data.len());
        inner.bytes.extend_from_slice(&data[..take]);
        inner.dropped += (data.len() - take) as u64;
    }

    /// Append one message of the `log` import as a line.
    pub fn line(&self, msg: &str) {
        self.write(msg.as_bytes());
        if !msg.ends_with('\n') {
            self.write(b"\n");
        }
    }

    /// The log as text (invalid UTF-8 replaced), with a note when it was cut.
    pub fn text(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::from_utf8_lossy(&inner.bytes).into_owned();
        if inner.dropped > 0 {
            text.push_str(&format!(
                "\n[log cut at {} bytes; {} more bytes dropped]\n",
                inner.cap, inner.dropped
            ));
        }
        text
    }
}

/// stdout or stderr of a run: writes go to the shared [`LogBuffer`].
#[derive(Clone)]
pub struct LogPipe {
    log: LogBuffer,
}

impl LogPipe {
    pub fn new(log: LogBuffer) -> LogPipe {
        LogPipe { log }
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Largest single write the guest is offered; it keeps any one host copy small.
const WRITE_PERMIT_BYTES: usize = 64 * 1024;

#[wasmtime_wasi::async_trait]
impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.log.write(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.log.write(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_at_cap() {
        let log = LogBuffer::new(10);
        log.line("hello");
        log.write(b"world!!!");
        let t = log.text();
        assert!(t.starts_with("hello\nworl"), "{t}");
        assert!(t.contains("log cut at 10 bytes; 4 more bytes dropped"), "{t}");
        let small = LogBuffer::new(100);
        small.line("a\n");
        small.line("b");
        assert_eq!(small.text(), "a\nb\n");
    }
}
