//! TLS for the one listener: certificate files to a rustls configuration, and
//! a certificate store that takes renewed files (certbot) for new
//! connections while existing connections carry on.

mod chain;
mod keys;
mod store;

pub use chain::{
    EXPIRY_WARNING_DAYS, Validity, intermediate_concerns, log_concerns, order_chain, validity,
};
pub use keys::{CertifiedPair, TlsError, load_certified_key, read_chain};
pub use store::{CertStore, watch_files};

use std::sync::Arc;

use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// An acceptor serving whatever pair `store` holds at handshake time.
pub fn acceptor(store: Arc<CertStore>) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(store);
    // Browsers speak HTTP/1.1 to the websocket endpoint.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}
