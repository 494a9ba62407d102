//! Why a probe could not reach the server, sorted by cause so that `check`
//! and `trigger` can name the cause and its fix instead of the transport's
//! error text ("failed to lookup address", "InvalidContentType"...).

use rustls::CertificateError;

/// What went wrong on the way to the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("DNS has no address for {host}: {reason}")]
    NoDnsRecord { host: String, reason: String },
    #[error("nothing listens on {address}:{port} (connection refused)")]
    Refused { address: String, port: u16 },
    #[error("cannot connect to {address}:{port}: {reason}")]
    Unreachable {
        address: String,
        port: u16,
        reason: String,
    },
    #[error("{address}:{port} answered in plain HTTP, not TLS")]
    PlainHttp { address: String, port: u16 },
    #[error(
        "the certificate {address}:{port} presents for {name} is not trusted on this machine: its issuer is not a known certificate authority"
    )]
    UntrustedIssuer {
        address: String,
        port: u16,
        name: String,
    },
    #[error("the certificate {address}:{port} presents does not cover {name}")]
    WrongName {
        address: String,
        port: u16,
        name: String,
    },
    #[error("the certificate {address}:{port} presents has expired")]
    Expired { address: String, port: u16 },
    #[error("TLS handshake with {address}:{port} as {name} failed: {reason}")]
    Tls {
        address: String,
        port: u16,
        name: String,
        reason: String,
    },
    #[error("{0:?} is not a valid server name")]
    BadName(String),
    #[error("no answer from {address}:{port} within {seconds} s")]
    NoAnswer {
        address: String,
        port: u16,
        seconds: u64,
    },
    #[error("{0}")]
    Http(String),
}

impl ProbeError {
    /// What the admin can do about it.
    pub fn fix(&self) -> String {
        match self {
            Self::NoDnsRecord { host, .. } => format!(
                "add an A (or AAAA) record for {host} at your DNS provider, or check the spelling of the forum url and the extension's host; to test before DNS is ready, pass --via IP:PORT"
            ),
            Self::Refused { .. } => "is flarum-ws running (systemctl status flarum-ws)? With a reverse proxy, is nginx up on 443? Without one, is the port open in the firewall and forwarded by the router?".into(),
            Self::Unreachable { .. } | Self::NoAnswer { .. } => "a firewall may be dropping the connection: open the port, or check the host's address".into(),
            Self::PlainHttp { .. } => "this port speaks plain HTTP (flarum-ws behind a reverse proxy does): point --via at the proxy (nginx, usually port 443), not at flarum-ws's own port".into(),
            Self::UntrustedIssuer { .. } => "if the certificate comes from your own CA, name that CA's certificate for this command: SSL_CERT_FILE=/path/to/ca.pem (browsers must trust it too); if it is self-signed, turn on \"Self-Signed Certificate Support\" on the extension's page (self_signed); for a public forum use a certificate from a CA such as Let's Encrypt".into(),
            Self::WrongName { name, .. } => format!("use a certificate that covers {name}, or set the extension's host (app_host) to a name the certificate covers"),
            Self::Expired { .. } => "renew it (certbot renew); flarum-ws picks up renewed files by itself".into(),
            Self::Tls { .. } => "browsers show ERR_SSL_VERSION_OR_CIPHER_MISMATCH here: check the certificate and key paths, use the full chain, and a certificate for this host".into(),
            Self::BadName(_) => "set the extension's host (app_host) or the forum url to a host name".into(),
            Self::Http(_) => "check the server log (flarum-ws serve --verbose)".into(),
        }
    }

    /// Sorts a failed TLS handshake by the rustls error inside it.
    pub(crate) fn from_handshake(
        address: &str,
        port: u16,
        name: &str,
        error: std::io::Error,
    ) -> Self {
        let (address, port, name) = (address.to_owned(), port, name.to_owned());
        let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            return Self::Tls {
                address,
                port,
                name,
                reason: error.to_string(),
            };
        };
        match tls {
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                Self::PlainHttp { address, port }
            }
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => Self::UntrustedIssuer {
                address,
                port,
                name,
            },
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => Self::WrongName {
                address,
                port,
                name,
            },
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => Self::Expired { address, port },
            other => Self::Tls {
                address,
                port,
                name,
                reason: other.to_string(),
            },
        }
    }

    /// Sorts a failed TCP connect.
    pub(crate) fn from_connect(address: &str, port: u16, error: std::io::Error) -> Self {
        let address = address.to_owned();
        if error.kind() == std::io::ErrorKind::ConnectionRefused {
            Self::Refused { address, port }
        } else {
            Self::Unreachable {
                address,
                port,
                reason: error.to_string(),
            }
        }
    }
}
