//! turmoil's simulated TCP behind the production transports' [`Dialer`] and [`Acceptor`].

use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use wormhole_transports::net::{Acceptor, BoxedStream, Dialer};

/// Dials turmoil TCP: the production WebSocket client runs over it unchanged
/// (`WebSocketTransport::with_dialer`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilDialer;

#[async_trait]
impl Dialer for TurmoilDialer {
    async fn dial(&self, host: &str, port: u16) -> io::Result<BoxedStream> {
        let stream = turmoil::net::TcpStream::connect((host, port)).await?;
        Ok(Box::new(stream))
    }
}

/// A turmoil TCP listener as an [`Acceptor`], for the production relay listener
/// (`WebSocketListener::from_acceptor`).
pub struct TurmoilAcceptor(pub turmoil::net::TcpListener);

impl std::fmt::Debug for TurmoilAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TurmoilAcceptor")
            .field(&self.0.local_addr().ok())
            .finish()
    }
}

impl TurmoilAcceptor {
    /// Binds `0.0.0.0:port` on the current simulated host.
    pub async fn bind(port: u16) -> io::Result<TurmoilAcceptor> {
        Ok(TurmoilAcceptor(
            turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?,
        ))
    }
}

#[async_trait]
impl Acceptor for TurmoilAcceptor {
    async fn accept(&mut self) -> io::Result<(BoxedStream, SocketAddr)> {
        let (stream, addr) = self.0.accept().await?;
        Ok((Box::new(stream), addr))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}
