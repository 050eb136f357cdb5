//! Server TLS with rustls (TLS 1.2 and 1.3 only), and the CA files of the outgoing
//! clients.
//!
//! The certificate and key are re-read when either file changes: on a handshake, at
//! most once a second, the files' modification times and lengths are compared with the
//! loaded ones (two `stat` calls). A pair that does not load (a file half written, a key
//! that does not match the certificate) is logged and the previous pair is kept; the
//! next change is tried again. The client CA of mutual TLS is read at startup.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A TLS file that cannot be used, naming it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// The files of one listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate signed by one
    /// (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

/// How often, at most, a handshake looks at the files' modification times.
const RECHECK: Duration = Duration::from_secs(1);

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn invalid(path: &Path, message: impl fmt::Display) -> TlsError {
    TlsError::Invalid {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Every PEM certificate of a file; an error if there is none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(invalid(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| invalid(path, format!("holds no usable PEM private key ({e})")))
}

/// The ring provider: the one reqwest and tonic use here too, and it builds without a
/// C toolchain beyond cc. (rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange; switching every client and server to aws-lc-rs is a separate change.)
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified_key(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = load_certs(&files.cert_file)?;
    let key = load_key(&files.key_file)?;
    CertifiedKey::from_der(certs, key, &provider())
        .map(Arc::new)
        .map_err(|e| {
            invalid(
                &files.key_file,
                format!(
                    "does not go with the certificate {} ({e})",
                    files.cert_file.display()
                ),
            )
        })
}

/// Modification time and length of a file, `None` if it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

struct Current {
    key: Arc<CertifiedKey>,
    stamps: [Stamp; 2],
    checked: Instant,
}

/// The certificate of a listener, re-read when its files change.
pub struct ReloadingCert {
    files: TlsFiles,
    current: Mutex<Current>,
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert_file", &self.files.cert_file)
            .field("key_file", &self.files.key_file)
            .finish()
    }
}

impl ReloadingCert {
    /// Loads the pair now; an error if it does not load.
    pub fn load(files: &TlsFiles) -> Result<ReloadingCert, TlsError> {
        let stamps = [stamp(&files.cert_file), stamp(&files.key_file)];
        let key = certified_key(files)?;
        Ok(ReloadingCert {
            files: files.clone(),
            current: Mutex::new(Current {
                key,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The pair to present, re-read first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(current.checked) >= RECHECK {
            current.checked = now;
            let stamps = [stamp(&self.files.cert_file), stamp(&self.files.key_file)];
            if stamps != current.stamps {
                current.stamps = stamps;
                match certified_key(&self.files) {
                    Ok(key) => {
                        current.key = key;
                        tracing::info!(
                            cert = %self.files.cert_file.display(),
                            "TLS certificate reloaded."
                        );
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "TLS certificate files changed but do not load; keeping the previous pair."
                    ),
                }
            }
        }
        current.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// ALPN of the gRPC listener.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN of the HTTP listeners (HTTP/2 and HTTP/1.1).
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// The rustls server config of one listener: TLS 1.2+, the reloading certificate, and
/// client certificates required when a client CA is set.
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let builder = match &files.client_ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| invalid(ca, format!("not a usable CA certificate ({e})")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(ReloadingCert::load(files)?));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The TLS acceptor of a listener, or `None` for plain text.
pub fn acceptor(
    files: Option<&TlsFiles>,
    alpn: &[&[u8]],
) -> Result<Option<tokio_rustls::TlsAcceptor>, TlsError> {
    files
        .map(|f| server_config(f, alpn).map(tokio_rustls::TlsAcceptor::from))
        .transpose()
}

/// The PEM bytes of a CA file for an outgoing client, checked to hold a certificate.
pub fn read_ca_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    load_certs(path)?;
    read(path)
}

/// A reqwest client builder that also trusts the CA certificates of `ca_file` (the
/// system's roots stay trusted).
pub fn reqwest_with_ca(
    builder: reqwest::ClientBuilder,
    ca_file: Option<&Path>,
) -> Result<reqwest::ClientBuilder, TlsError> {
    let Some(path) = ca_file else {
        return Ok(builder);
    };
    let pem = read_ca_file(path)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| invalid(path, format!("not a PEM certificate file ({e})")))?;
    Ok(certs
        .into_iter()
        .fold(builder, |b, cert| b.add_root_certificate(cert)))
}

/// The tonic client TLS of an https endpoint: the system's roots and those of `ca_file`.
pub fn tonic_client_tls(
    ca_file: Option<&Path>,
) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    let config = tonic::transport::ClientTlsConfig::new().with_native_roots();
    Ok(match ca_file {
        Some(path) => {
            config.ca_certificate(tonic::transport::Certificate::from_pem(read_ca_file(path)?))
        }
        None => config,
    })
}
