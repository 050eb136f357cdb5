//! Server TLS with rustls (TLS 1.2 and 1.3 only), and the CA files of the outgoing
//! clients.
//!
//! The certificate and key are re-read when either file changes: on a handshake, at
//! most once a second, the files' modification times and lengths are compared with the
//! loaded ones (two `stat` calls). A pair that does not load (a file half written, a key
//! that does not match the certificate) is logged and the previous pair is kept; the
//! next change is tried again. The client CA file of mutual TLS is re-read the same way,
//! on a client certificate's verification (a CA file that does not load keeps the
//! previous CAs); the server sends no CA names in its certificate request, so that a
//! changed file needs nothing cached.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

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
    /// A file of one role, named by its option: `--tls-cert-file ([tls] cert_file): …`.
    #[error("{option} ({key}): {source}")]
    Option {
        option: &'static str,
        key: &'static str,
        source: Box<TlsError>,
    },
}

impl TlsError {
    fn option(self, option: &'static str, key: &'static str) -> TlsError {
        TlsError::Option {
            option,
            key,
            source: Box::new(self),
        }
    }
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

const CERT_OPTION: (&str, &str) = ("--tls-cert-file", "[tls] cert_file");
const KEY_OPTION: (&str, &str) = ("--tls-key-file", "[tls] key_file");
const CLIENT_CA_OPTION: (&str, &str) = ("--tls-client-ca-file", "[tls] client_ca_file");

fn certified_key(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = load_certs(&files.cert_file).map_err(|e| e.option(CERT_OPTION.0, CERT_OPTION.1))?;
    let key = load_key(&files.key_file).map_err(|e| e.option(KEY_OPTION.0, KEY_OPTION.1))?;
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
            .option(KEY_OPTION.0, KEY_OPTION.1)
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

/// The verifier of the client certificates of a CA file.
fn client_verifier(
    path: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| invalid(path, format!("not a usable CA certificate ({e})")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .clear_root_hint_subjects()
        .build()
        .map_err(|e| invalid(path, e))
}

struct CurrentCa {
    verifier: Arc<dyn ClientCertVerifier>,
    stamp: Stamp,
    checked: Instant,
}

/// Mutual TLS with the CAs of a file, re-read when the file changes.
pub struct ReloadingClientCa {
    path: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: Mutex<CurrentCa>,
}

impl fmt::Debug for ReloadingClientCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingClientCa")
            .field("client_ca_file", &self.path)
            .finish()
    }
}

impl ReloadingClientCa {
    /// Loads the CA file now; an error if it holds no usable CA certificate.
    pub fn load(
        path: &Path,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<ReloadingClientCa, TlsError> {
        let stamp = stamp(path);
        let verifier = client_verifier(path, &provider)?;
        Ok(ReloadingClientCa {
            path: path.to_owned(),
            provider,
            current: Mutex::new(CurrentCa {
                verifier,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The verifier of the CAs in force, re-read first if the file changed.
    fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if now.duration_since(current.checked) >= RECHECK {
            current.checked = now;
            let stamp = stamp(&self.path);
            if stamp != current.stamp {
                current.stamp = stamp;
                match client_verifier(&self.path, &self.provider) {
                    Ok(verifier) => {
                        current.verifier = verifier;
                        tracing::info!(
                            client_ca = %self.path.display(),
                            "TLS client CA file reloaded."
                        );
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "The TLS client CA file changed but does not load; keeping the previous CAs."
                    ),
                }
            }
        }
        current.verifier.clone()
    }
}

impl ClientCertVerifier for ReloadingClientCa {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
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
        Some(ca) => builder.with_client_cert_verifier(Arc::new(
            ReloadingClientCa::load(ca, provider)
                .map_err(|e| e.option(CLIENT_CA_OPTION.0, CLIENT_CA_OPTION.1))?,
        )),
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
