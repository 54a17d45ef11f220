//! TLS (feature `tls`): rustls with the `ring` provider, for `wss://` and `https://`.
//!
//! * Client: [`ClientTls`] is the one place that builds the client-side
//!   [`rustls::ClientConfig`]: Mozilla's roots (webpki-roots) plus any extra CA certificates
//!   the user trusts (a relay with a private CA). [`WebSocketTransport::with_tls`] uses it for
//!   `wss://`; an HTTPS client uses [`ClientTls::connect`] or [`ClientTls::config`].
//! * Relay: [`ServerTls`] holds a certificate chain and key (PEM files) and runs the server
//!   handshake. [`WebSocketListener::bind_with`] wraps every accepted TCP stream in it
//!   *before* reading the HTTP request, so one port serves `wss://` and `https://`, and
//!   whatever routes the requests sees the decrypted stream.
//!
//! [`WebSocketTransport::with_tls`]: super::WebSocketTransport::with_tls
//! [`WebSocketListener::bind_with`]: super::WebSocketListener::bind_with

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

/// The rustls these types are built on, for callers that need its types (certificates,
/// [`rustls::ClientConfig`]) in the same version.
pub use rustls;

/// The largest PEM file read (certificates or a key): 1 MiB.
const MAX_PEM_FILE: u64 = 1 << 20;

/// Why TLS could not be set up. Never holds key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A PEM file is larger than 1 MiB.
    #[error("{path} is larger than 1 MiB; is it really a PEM file?")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A PEM file holds no certificate (or a malformed one).
    #[error("{path} holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\"){}", detail(.reason))]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said, if it failed.
        reason: Option<String>,
    },
    /// A PEM file holds no private key (or a malformed one).
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1){}", detail(.reason))]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said, if it failed.
        reason: Option<String>,
    },
    /// A CA certificate was refused as a trust anchor.
    #[error("the CA certificate #{index} in {path} cannot be used as a trust anchor")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// The 1-based position of the certificate in the file.
        index: usize,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("TLS configuration refused")]
    Config(#[from] rustls::Error),
}

fn detail(reason: &Option<String>) -> String {
    reason
        .as_ref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default()
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(read)?.len();
    if len > MAX_PEM_FILE {
        return Err(TlsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    std::fs::read(path).map_err(read)
}

/// Reads every certificate of a PEM file (at least one).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_pem(path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok(certs),
        Ok(_) => Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
            reason: None,
        }),
        Err(e) => Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
            reason: Some(e.to_string()),
        }),
    }
}

/// Reads the first private key of a PEM file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_pem(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::NoKey {
        path: path.to_path_buf(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => None,
            other => Some(other.to_string()),
        },
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // An explicit provider: never depends on a process-wide default being installed.
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client side of TLS: which certificate authorities to trust.
///
/// [`ClientTls::default`] trusts Mozilla's roots (compiled in, shared by every user);
/// [`with_extra_ca`](ClientTls::with_extra_ca) / [`with_extra_ca_file`](ClientTls::with_extra_ca_file)
/// add a private CA *on top of* them. Cheap to clone (the configuration is shared).
///
/// ```no_run
/// use std::path::Path;
/// use wormhole_transports::websocket::{ClientTls, WebSocketTransport};
/// let tls = ClientTls::default().with_extra_ca_file(Path::new("/etc/wormhole/relay-ca.pem"))?;
/// let transport = WebSocketTransport::default().with_tls(tls.clone());
/// // The same `tls` serves an HTTPS client: `tls.config()` or `tls.connect(tcp, host)`.
/// # Ok::<(), wormhole_transports::websocket::TlsError>(())
/// ```
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    extra: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("extra_cas", &self.extra.len())
            .finish_non_exhaustive()
    }
}

impl PartialEq for ClientTls {
    /// The same trust: the same extra CA certificates (the built-in roots are always there).
    fn eq(&self, other: &ClientTls) -> bool {
        self.extra == other.extra
    }
}

impl Eq for ClientTls {}

impl Default for ClientTls {
    fn default() -> ClientTls {
        static DEFAULT: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        let config = DEFAULT.get_or_init(|| {
            build_client_config(&[])
                .expect("the ring provider supports the safe default TLS versions")
        });
        ClientTls {
            config: Arc::clone(config),
            extra: Vec::new(),
        }
    }
}

fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

fn build_client_config(extra: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = webpki_roots();
    for cert in extra {
        roots.add(cert.clone())?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Both WebSocket and the HTTP-polling client speak HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl ClientTls {
    /// Also trusts these CA certificates (DER), in addition to the built-in roots.
    pub fn with_extra_ca(
        mut self,
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<ClientTls, TlsError> {
        self.extra.extend(certs);
        self.config = build_client_config(&self.extra)?;
        Ok(self)
    }

    /// Also trusts every CA certificate in this PEM file, in addition to the built-in roots.
    pub fn with_extra_ca_file(mut self, path: &Path) -> Result<ClientTls, TlsError> {
        let certs = load_certificates(path)?;
        let mut roots = webpki_roots();
        for (i, cert) in certs.iter().enumerate() {
            roots.add(cert.clone()).map_err(|source| TlsError::BadCa {
                path: path.to_path_buf(),
                index: i + 1,
                source,
            })?;
        }
        self.extra.extend(certs);
        self.config = build_client_config(&self.extra)?;
        Ok(self)
    }

    /// The number of extra CA certificates trusted.
    pub fn extra_ca_count(&self) -> usize {
        self.extra.len()
    }

    /// The rustls client configuration (ring provider, safe protocol versions, the roots,
    /// ALPN `http/1.1`). Clone and adjust it for other uses if needed.
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    /// Runs the client handshake over `stream`, checking the certificate for `host` (a DNS
    /// name or an IP address).
    pub async fn connect<S>(&self, stream: S, host: &str) -> io::Result<client::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        TlsConnector::from(self.config())
            .connect(name, stream)
            .await
    }
}

/// The relay side of TLS: a certificate chain and its private key.
///
/// Cheap to clone. The key is held by rustls only; `Debug` shows nothing of it.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// From a PEM certificate chain (the server's certificate first, then intermediates) and
    /// a PEM private key, as `wormhole-relay --tls-cert PATH --tls-key PATH`.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let chain = load_certificates(cert)?;
        let key = load_private_key(key)?;
        ServerTls::new(chain, key)
    }

    /// From a DER certificate chain and private key.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ServerTls, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        // WebSocket upgrades and HTTP polling are both HTTP/1.1.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Runs the server handshake over `stream`.
    pub async fn accept<S>(&self, stream: S) -> io::Result<server::TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.acceptor.accept(stream).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, contents: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wormhole-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn bad_pem_files_get_clear_errors() {
        let missing = Path::new("/nonexistent/wormhole/ca.pem");
        let e = ClientTls::default()
            .with_extra_ca_file(missing)
            .unwrap_err();
        assert!(matches!(e, TlsError::Read { .. }), "{e}");
        assert!(
            e.to_string().contains("/nonexistent/wormhole/ca.pem"),
            "{e}"
        );

        let empty = temp("empty.pem", b"not a pem file\n");
        let e = ClientTls::default().with_extra_ca_file(&empty).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        let e = load_private_key(&empty).unwrap_err();
        assert!(matches!(e, TlsError::NoKey { .. }), "{e}");
        assert!(e.to_string().contains("no PEM private key"), "{e}");

        let junk = temp(
            "junk.pem",
            b"-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n",
        );
        let e = load_certificates(&junk).unwrap_err();
        assert!(
            matches!(
                e,
                TlsError::NoCertificate {
                    reason: Some(_),
                    ..
                }
            ),
            "{e}"
        );

        let huge = temp("huge.pem", &vec![b'a'; (MAX_PEM_FILE + 1) as usize]);
        assert!(matches!(
            load_certificates(&huge),
            Err(TlsError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_default_client_config_is_shared_and_speaks_http1() {
        let a = ClientTls::default();
        let b = ClientTls::default();
        assert!(Arc::ptr_eq(&a.config(), &b.config()));
        assert_eq!(a, b);
        assert_eq!(a.extra_ca_count(), 0);
        assert!(format!("{a:?}").contains("extra_cas: 0"));
    }
}
