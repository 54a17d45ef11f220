//! Where byte streams come from: [`Dialer`] (client side) and [`Acceptor`] (relay side).
//!
//! Transports that run over TCP (WebSocket, HTTP polling) take their streams from these traits
//! instead of calling `tokio::net` directly, so the same production code runs over real sockets
//! ([`TcpDialer`], `tokio::net::TcpListener`), TLS, or a simulator's network (turmoil).

use std::fmt;
use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

/// Any byte stream a transport can run over (tokio TCP, TLS, a simulator's TCP, …).
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncStream for T {}

/// A type-erased [`AsyncStream`].
pub type BoxedStream = Box<dyn AsyncStream>;

/// Opens byte streams to `host:port` (the client side).
#[async_trait]
pub trait Dialer: Send + Sync + fmt::Debug + 'static {
    /// Connects to `host:port`. Callers bound the wait with their own deadline.
    async fn dial(&self, host: &str, port: u16) -> io::Result<BoxedStream>;
}

/// Dials real TCP with `TCP_NODELAY` set (frames are small and latency-bound).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpDialer;

#[async_trait]
impl Dialer for TcpDialer {
    async fn dial(&self, host: &str, port: u16) -> io::Result<BoxedStream> {
        let stream = tokio::net::TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}

/// Yields accepted byte streams (the relay side).
#[async_trait]
pub trait Acceptor: Send + fmt::Debug + 'static {
    /// The next accepted stream and its peer's address. An error is logged by the caller,
    /// which keeps accepting (e.g. `EMFILE`).
    async fn accept(&mut self) -> io::Result<(BoxedStream, SocketAddr)>;

    /// The local address being listened on.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

#[async_trait]
impl Acceptor for tokio::net::TcpListener {
    async fn accept(&mut self) -> io::Result<(BoxedStream, SocketAddr)> {
        let (stream, addr) = tokio::net::TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((Box::new(stream), addr))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

#[async_trait]
impl<A: Acceptor + ?Sized> Acceptor for Box<A> {
    async fn accept(&mut self) -> io::Result<(BoxedStream, SocketAddr)> {
        (**self).accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        (**self).local_addr()
    }
}
