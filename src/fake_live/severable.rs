//! A TCP listener whose connections a handler can sever, to fake an answer lost on the way
//! back: axum offers no other way for a handler to not answer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections carry a switch that makes them fail: a handler flips it to
/// close the connection without an answer (axum offers no other way to not answer).
pub(crate) struct SeverableListener(pub(crate) TcpListener);

/// A connection as a handler sees it (axum `ConnectInfo`).
#[derive(Clone, Debug)]
pub(crate) struct Conn {
    severed: Arc<AtomicBool>,
}

impl Conn {
    pub(crate) fn sever(&self) {
        self.severed.store(true, Ordering::Release);
    }
}

impl Connected<axum::serve::IncomingStream<'_, SeverableListener>> for Conn {
    fn connect_info(stream: axum::serve::IncomingStream<'_, SeverableListener>) -> Self {
        Self {
            severed: stream.io().severed.clone(),
        }
    }
}

impl axum::serve::Listener for SeverableListener {
    type Io = SeverableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    // Small answers on keep-alive connections: don't wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let io = SeverableStream {
                        inner: stream,
                        severed: Arc::new(AtomicBool::new(false)),
                    };
                    return (io, addr);
                }
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) {
                        // Out of file descriptors, most likely: give connections time to close.
                        tracing::warn!(error = %e, "fake-live accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

pub(crate) struct SeverableStream {
    inner: TcpStream,
    severed: Arc<AtomicBool>,
}

impl SeverableStream {
    fn is_severed(&self) -> bool {
        self.severed.load(Ordering::Acquire)
    }
}

fn severed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "connection severed by fault injection",
    )
}

impl AsyncRead for SeverableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_severed() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SeverableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_severed() {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.is_severed() {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_severed() {
            return Poll::Ready(Err(severed_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
