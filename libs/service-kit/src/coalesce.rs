//! Coalescing the writes of an HTTP/2 connection: responses that finish in the same turn of the scheduler leave in one
//! system call and one TCP segment instead of one each.
//!
//! hyper's HTTP/2 connection task writes and flushes as soon as one stream's response is ready; with many calls in
//! flight on a connection that is one `writev` per response, and on a busy machine the kernel's send path (and, on
//! loopback, the receiver's) is then a large part of every call. [`CoalescedWrites`] takes the writes into a buffer
//! and, the first time a flush is asked for, yields once (the task wakes itself and goes to the back of the run
//! queue) before writing: the other calls whose answers are ready by then add their frames to the same write. An
//! idle connection pays one extra poll of its task; nothing waits on a timer.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The most a connection holds back before writing regardless; a larger write goes straight through.
const LIMIT: usize = 64 * 1024;

/// A connection whose writes are held until a flush and whose flushes wait one turn of the scheduler.
pub struct CoalescedWrites<T> {
    inner: T,
    buffer: Vec<u8>,
    /// How much of `buffer` has been written.
    written: usize,
    /// Whether this flush has already yielded once.
    yielded: bool,
}

impl<T> CoalescedWrites<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            buffer: Vec::new(),
            written: 0,
            yielded: false,
        }
    }

    fn held(&self) -> usize {
        self.buffer.len() - self.written
    }
}

impl<T: AsyncWrite + Unpin> CoalescedWrites<T> {
    /// Writes what is held until nothing is.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buffer.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buffer[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buffer.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes: writes what is held first if they would not fit.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<()>> {
        if self.held() > 0 && self.held() + len > LIMIT {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_room(cx, buf.len()))?;
        if this.held() == 0 && buf.len() >= LIMIT {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        this.buffer.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len = bufs.iter().map(|buf| buf.len()).sum();
        ready!(this.poll_room(cx, len))?;
        if this.held() == 0 && len >= LIMIT {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        for buf in bufs {
            this.buffer.extend_from_slice(buf);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held() > 0 {
            if !this.yielded {
                // Back of the run queue: the calls answered meanwhile write with this one.
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CoalescedWrites<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: Connected> Connected for CoalescedWrites<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
