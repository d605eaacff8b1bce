//! TLS for both listeners and for the calls a node makes (rustls, the ring provider).
//!
//! - A node with TLS has a certificate and key (PEM) and the CA (PEM) that signed every
//!   node's certificate. Both listeners speak TLS; the node-to-node listener wants a client
//!   certificate signed by that CA (mutual TLS), the public API takes one if offered (a node
//!   joining through it shows its own).
//! - The files are watched: when one changes, they are read again and the next handshake
//!   uses them, on both sides, without a restart. A change that does not load is logged
//!   and the old material kept.
//! - Plain HTTP sent to a TLS port is answered with a 400 that says to use https.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Where a node's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    /// It showed a certificate signed by the cluster's CA: it is a node of the cluster.
    pub node_certificate: bool,
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Peer {
        *stream.remote_addr()
    }
}

impl Connected<IncomingStream<'_, PlainListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, PlainListener>) -> Peer {
        *stream.remote_addr()
    }
}

/// Loaded material, replaced whole when the files change.
#[derive(Clone)]
struct Material {
    modified: [Option<SystemTime>; 3],
    certified: Arc<CertifiedKey>,
    /// Server configs wanting a client certificate, and taking one if offered.
    server_required: Arc<ServerConfig>,
    server_optional: Arc<ServerConfig>,
    /// Checks the certificates of the nodes this one calls.
    peer_verifier: Arc<WebPkiServerVerifier>,
}

/// A node's TLS: the current material and how to reload it.
pub struct Tls {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

impl Material {
    fn load(files: &TlsFiles, provider: &Arc<CryptoProvider>) -> Result<Material, String> {
        let modified = [
            modified(&files.cert),
            modified(&files.key),
            modified(&files.ca),
        ];
        let chain = certificates(&files.cert, "tls_cert")?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| format!("tls_key {}: {e}", files.key.display()))?;
        let mut roots = RootCertStore::empty();
        for ca in certificates(&files.ca, "tls_ca")? {
            roots
                .add(ca)
                .map_err(|e| format!("tls_ca {}: {e}", files.ca.display()))?;
        }
        let roots = Arc::new(roots);
        let signing = provider
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| format!("tls_key {}: {e}", files.key.display()))?;
        let certified = Arc::new(CertifiedKey::new(chain.clone(), signing));
        certified.keys_match().map_err(|e| {
            format!(
                "tls_key {} does not belong to tls_cert {}: {e}",
                files.key.display(),
                files.cert.display()
            )
        })?;
        let server = |required: bool| -> Result<Arc<ServerConfig>, String> {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
            let verifier = if required {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            }
            .map_err(|e| format!("tls_ca {}: {e}", files.ca.display()))?;
            let mut config = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| format!("tls_cert {}: {e}", files.cert.display()))?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(config))
        };
        let peer_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| format!("tls_ca {}: {e}", files.ca.display()))?;
        Ok(Material {
            modified,
            certified,
            server_required: server(true)?,
            server_optional: server(false)?,
            peer_verifier,
        })
    }
}

impl Tls {
    /// Reads and checks the files.
    pub fn load(files: &TlsFiles) -> Result<Arc<Tls>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let material = Material::load(files, &provider)?;
        Ok(Arc::new(Tls {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(material)),
        }))
    }

    fn current(&self) -> Arc<Material> {
        match self.current.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again if any changed; whether the material changed.
    pub fn reload_if_changed(&self) -> bool {
        let files = &self.files;
        let now = [
            modified(&files.cert),
            modified(&files.key),
            modified(&files.ca),
        ];
        if now == self.current().modified {
            return false;
        }
        match Material::load(files, &self.provider) {
            Ok(material) => {
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(material);
                }
                tracing::info!(cert = %files.cert.display(), "TLS certificates reloaded");
                true
            }
            Err(why) => {
                // Half-written files are common while a rotation copies them: keep the old
                // material, and try again at the next change.
                tracing::warn!(error = %why, "TLS files changed but do not load; keeping the old ones");
                if let Ok(mut current) = self.current.write() {
                    let mut kept = Material::clone(&current);
                    kept.modified = now;
                    *current = Arc::new(kept);
                }
                false
            }
        }
    }

    /// Watches the files every `every` until `stop` turns true.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let tls = self.clone();
            let _ = tokio::task::spawn_blocking(move || tls.reload_if_changed()).await;
        }
    }

    /// The client config of the node's own calls: it trusts the cluster's CA and shows the
    /// node's certificate, both as they are at each handshake.
    pub fn client_config(self: &Arc<Self>) -> Result<ClientConfig, String> {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CurrentVerifier(self.clone())))
            .with_client_cert_resolver(Arc::new(CurrentCert(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Checks a peer's certificate against the CA as currently loaded.
#[derive(Debug)]
struct CurrentVerifier(Arc<Tls>);

impl ServerCertVerifier for CurrentVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.current().peer_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .peer_verifier
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current()
            .peer_verifier
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current().peer_verifier.supported_verify_schemes()
    }
}

/// Shows the node's certificate as currently loaded.
#[derive(Debug)]
struct CurrentCert(Arc<Tls>);

impl ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Whether a listener wants client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// Node-to-node: only the cluster's nodes may connect.
    Required,
    /// The public API: users sign in; a node may show its certificate.
    Optional,
}

/// A TCP listener that hands out connections with TLS set up. Handshakes run concurrently
/// (a slow client does not hold up the others) and time out.
pub struct TlsListener {
    ready: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    pub fn new(tcp: TcpListener, tls: Arc<Tls>, certs: ClientCerts) -> io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = tcp.accept() => a,
                    _ = tx.closed() => return,
                };
                let (stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "accepting a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let tx = tx.clone();
                let material = tls.current();
                tokio::spawn(async move {
                    let shaken =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(stream, material, certs))
                            .await;
                    match shaken {
                        Ok(Ok(Some(conn))) => {
                            let node_certificate = conn.get_ref().1.peer_certificates().is_some();
                            let _ = tx
                                .send((
                                    conn,
                                    Peer {
                                        addr,
                                        node_certificate,
                                    },
                                ))
                                .await;
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

/// The TLS handshake, or for a client that speaks plain HTTP a 400 saying so (`None`).
async fn handshake(
    mut stream: TcpStream,
    material: Arc<Material>,
    certs: ClientCerts,
) -> io::Result<Option<tokio_rustls::server::TlsStream<TcpStream>>> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    // A TLS connection opens with a handshake record (content type 22).
    if n == 1 && first[0] != 0x16 {
        let body = "this port speaks TLS: use https://\n";
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
        return Ok(None);
    }
    let config = match certs {
        ClientCerts::Required => material.server_required.clone(),
        ClientCerts::Optional => material.server_optional.clone(),
    };
    tokio_rustls::TlsAcceptor::from(config)
        .accept(stream)
        .await
        .map(Some)
}

impl Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task ended (it cannot while this listener lives): wait forever
            // rather than spin; the node's shutdown ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            node_certificate: false,
        })
    }
}

/// A plain TCP listener with small answers sent at once (no Nagle delay).
pub struct PlainListener(pub TcpListener);

impl Listener for PlainListener {
    type Io = TcpStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = Listener::accept(&mut self.0).await;
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY");
        }
        (
            stream,
            Peer {
                addr,
                node_certificate: false,
            },
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.0.local_addr()?,
            node_certificate: false,
        })
    }
}
