//! The stand-in's listener: plain HTTP or HTTPS (`--tls-cert`, `--tls-key`), and the connect
//! delay (`--connect-delay-ms`) that makes a loopback endpoint behave like a far one, whose new
//! connections cost a few round trips of TCP and TLS handshake before the first request is
//! taken.
//!
//! Each accepted connection gets a task of its own that waits out the delay and does the TLS
//! handshake, then hands the connection to axum through a channel: a slow or stuck client
//! never holds up the accept loop, and axum only ever sees connections ready to be read. A
//! connection's later requests are read as soon as they arrive: only the first waits.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::severable::{SeverableStream, Transport};

/// A TLS handshake that has not finished by then is abandoned, so a client that connects and
/// says nothing costs one task for a while, not forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `--tls-cert`/`--tls-key` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read PEM certificates from {path}: {source}")]
    Certificates {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    // The pem error names what it could not parse, never the key's bytes.
    #[error("cannot read a PEM private key from {path}: {source}")]
    PrivateKey {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    #[error("the TLS certificate and key are not usable together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A server TLS configuration from PEM files: the certificate chain (leaf first) and its key.
pub fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsConfigError::Certificates {
            path: cert.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate(cert.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsConfigError::PrivateKey {
        path: key.to_owned(),
        source,
    })?;
    // An explicit provider: the process may link more than one, and then rustls will not pick.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // The stand-in speaks HTTP/1.1 only (axum is built without http2).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// How new connections are taken.
#[derive(Clone, Debug, Default)]
pub(crate) struct Accepting {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Waited after accepting, before the connection is read at all.
    pub connect_delay: Duration,
}

/// What axum serves: connections that finished their delay and handshake.
pub(crate) struct Listener {
    ready: mpsc::Receiver<(SeverableStream, SocketAddr)>,
    local_addr: SocketAddr,
    /// Ends the accept loop and the connections still in their delay when the listener goes.
    _stop: tokio_util::sync::DropGuard,
}

impl Listener {
    pub(crate) fn new(tcp: TcpListener, accepting: Accepting) -> io::Result<Self> {
        let local_addr = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(256);
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(tcp, accepting, tx, stop.clone()));
        Ok(Self {
            ready,
            local_addr,
            _stop: stop.drop_guard(),
        })
    }
}

impl axum::serve::Listener for Listener {
    type Io = SeverableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends with the listener itself (`stop`); axum stops asking
            // before that, but the trait has no way to say "no more".
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    accepting: Accepting,
    ready: mpsc::Sender<(SeverableStream, SocketAddr)>,
    stop: CancellationToken,
) {
    let acceptor = accepting.tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = tcp.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(conn) => conn,
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
                continue;
            }
        };
        // Small answers on keep-alive connections: don't wait for Nagle.
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        let delay = accepting.connect_delay;
        let stop = stop.clone();
        tokio::spawn(async move {
            let prepared = async {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                match acceptor {
                    None => Some(Transport::Plain(stream)),
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(tls)) => Some(Transport::Tls(Box::new(tls))),
                            Ok(Err(e)) => {
                                tracing::debug!(%addr, error = %e, "fake-live TLS handshake failed");
                                None
                            }
                            Err(_) => None,
                        }
                    }
                }
            };
            let transport = tokio::select! {
                () = stop.cancelled() => return,
                transport = prepared => transport,
            };
            if let Some(transport) = transport {
                // A send error means the server is gone: the connection just closes.
                let _ = ready.send((SeverableStream::new(transport), addr)).await;
            }
        });
    }
}
