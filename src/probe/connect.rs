//! A TCP or TLS connection to the server, verified the way browsers verify
//! it, or not at all when the admin declared the certificate self-signed.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;

use super::ProbeError;

/// Where and how to reach the server.
#[derive(Debug, Clone)]
pub struct Target {
    /// Address to connect to (often 127.0.0.1).
    pub address: String,
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
    /// Name to send (SNI) and verify the certificate against.
    pub server_name: String,
    /// Accept any certificate (the self-signed switch).
    pub insecure: bool,
}

impl Target {
    /// `secure` when this connection uses TLS, `plain` otherwise (`wss`/`ws`).
    pub fn scheme(&self, secure: &'static str, plain: &'static str) -> &'static str {
        if self.tls { secure } else { plain }
    }
}

/// Where a probe on this machine reaches a server bound to `bind_host`:
/// loopback when it listens on every address.
pub fn local_address(bind_host: &str) -> String {
    match bind_host {
        "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "::1".to_owned(),
        other => other.to_owned(),
    }
}

/// A plain (`Left`) or TLS (`Right`) stream; tokio-util's `Either` already
/// forwards reads and writes to whichever it holds.
pub type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// Accepts every certificate: what the forum's PHP client does with the
/// self-signed switch on.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration, built once per process: reading the system's
/// certificate store takes milliseconds, and webhooks connect often.
fn client_config(insecure: bool) -> Arc<ClientConfig> {
    static VERIFYING: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static TRUSTING: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    let slot = if insecure { &TRUSTING } else { &VERIFYING };
    slot.get_or_init(|| Arc::new(build_client_config(insecure)))
        .clone()
}

/// Trust anchors: Mozilla's (built in, so a machine without a CA bundle
/// still verifies public certificates), the system's store (where an
/// admin installs a company CA), and the file `SSL_CERT_FILE` names.
fn root_store() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    // Extra trust anchors, as Node's NODE_EXTRA_CA_CERTS does.
    if let Ok(path) = std::env::var("SSL_CERT_FILE")
        && let Ok(chain) = crate::tls::read_chain(std::path::Path::new(&path))
    {
        for cert in chain {
            let _ = roots.add(cert);
        }
    }
    roots
}

fn build_client_config(insecure: bool) -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(root_store())
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// Opens the connection (TLS handshake included). A name is looked up
/// first, so that a missing DNS record is told apart from a closed port.
pub async fn connect(target: &Target) -> Result<Stream, ProbeError> {
    let (address, port) = (target.address.as_str(), target.port);
    let addresses: Vec<_> = tokio::net::lookup_host((address, port))
        .await
        .map_err(|e| ProbeError::NoDnsRecord {
            host: address.to_owned(),
            reason: e.to_string(),
        })?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for socket_address in addresses {
        match TcpStream::connect(socket_address).await {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(error) => last = Some(error),
        }
    }
    let tcp = match (tcp, last) {
        (Some(tcp), _) => tcp,
        (None, Some(error)) => return Err(ProbeError::from_connect(address, port, error)),
        (None, None) => {
            return Err(ProbeError::NoDnsRecord {
                host: address.to_owned(),
                reason: "the lookup returned no address".into(),
            });
        }
    };
    let _ = tcp.set_nodelay(true);
    if !target.tls {
        return Ok(Either::Left(tcp));
    }
    let name = ServerName::try_from(target.server_name.clone())
        .map_err(|_| ProbeError::BadName(target.server_name.clone()))?;
    let connector = TlsConnector::from(client_config(target.insecure));
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| ProbeError::from_handshake(address, port, &target.server_name, e))?;
    Ok(Either::Right(Box::new(tls)))
}
