//! Reading a full-chain certificate and its private key from PEM files:
//! PKCS#8, PKCS#1 and SEC1 keys, passphrase-protected PKCS#8 keys, and a
//! clear refusal (with the conversion command) for legacy OpenSSL-encrypted
//! keys.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pkcs8::EncryptedPrivateKeyInfoRef;
use pkcs8::der::Document;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, SectionKind};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

use super::chain::{OrderedChain, order_chain};
use crate::access::{Account, can_read};
use crate::config::TlsFiles;

/// Why a certificate or key could not be used; each says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("{path} cannot be read by flarum-ws, running as {user}: {why}")]
    Denied {
        path: PathBuf,
        user: String,
        why: String,
        fix: String,
    },
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{0} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate(PathBuf),
    #[error("{0} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey(PathBuf),
    #[error("{0} is encrypted but no passphrase is set")]
    NeedsPassphrase(PathBuf),
    #[error(
        "{0} could not be decrypted: the passphrase is wrong or the encryption is not supported (PBES2 with AES)"
    )]
    WrongPassphrase(PathBuf),
    #[error(
        "{path} uses the legacy OpenSSL PEM encryption (Proc-Type: 4,ENCRYPTED), which flarum-ws does not read"
    )]
    LegacyEncryption { path: PathBuf },
    #[error("{0}: the key type is not supported (use RSA, ECDSA P-256/P-384 or Ed25519)")]
    UnsupportedKey(PathBuf),
    #[error("the private key {key} does not belong to the certificate {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

impl TlsError {
    /// What the admin can do about it: each cause has its own fix.
    pub fn fix(&self) -> String {
        match self {
            Self::Missing(path) => format!(
                "check the path {}: with Let's Encrypt the certificate setting names /etc/letsencrypt/live/YOUR.HOST/fullchain.pem and the key setting privkey.pem beside it",
                path.display()
            ),
            Self::Denied { fix, .. } => fix.clone(),
            Self::Unreadable { .. } => "replace the file with the PEM file your certificate authority issued".into(),
            Self::NoCertificate(_) => "point the certificate setting at the full-chain PEM file (Let's Encrypt: fullchain.pem), not at the key".into(),
            Self::NoKey(_) => "point the key setting at the private key file (Let's Encrypt: privkey.pem), not at a certificate".into(),
            Self::NeedsPassphrase(_) => "set the key's passphrase on the extension's page (or FLARUM_WS_TLS_PASSPHRASE, tls_passphrase in YAML)".into(),
            Self::WrongPassphrase(path) => format!(
                "check the passphrase: `openssl pkey -in {} -noout` asks for it and says whether it is right; keys encrypted with anything but PBES2/AES must be re-encrypted: openssl pkcs8 -topk8 -v2 aes-256-cbc",
                path.display()
            ),
            Self::LegacyEncryption { path } => {
                let path = path.display();
                format!(
                    "convert it to encrypted PKCS#8: openssl pkcs8 -topk8 -v2 aes-256-cbc -in {path} -out {path}.pkcs8 (it asks for the old and a new passphrase), then point the key setting at {path}.pkcs8"
                )
            }
            Self::UnsupportedKey(_) => "use an RSA, ECDSA P-256/P-384 or Ed25519 key (certbot issues those)".into(),
            Self::KeyMismatch { .. } => "use the key file issued with this certificate (Let's Encrypt: privkey.pem next to fullchain.pem)".into(),
        }
    }
}

fn unreadable(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Unreadable {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Which directory or file keeps this process out of `path`, and the fix.
fn denied(path: &Path) -> TlsError {
    let account = Account::current();
    let (why, fix) = match can_read(&account, path) {
        Err(blocked) => (blocked.describe(&account), blocked.fix(&account)),
        Ok(()) => (
            "permission denied (by a security module or the service's sandbox, not by the file's permissions)".into(),
            "check the service's ReadOnlyPaths=/InaccessiblePaths= and AppArmor or SELinux rules".into(),
        ),
    };
    TlsError::Denied {
        path: path.to_owned(),
        user: account.name,
        why,
        fix,
    }
}

/// One PEM section: its kind and DER bytes.
type Section = (SectionKind, Vec<u8>);

fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => TlsError::Missing(path.to_owned()),
        std::io::ErrorKind::PermissionDenied => denied(path),
        _ => unreadable(path, error),
    })
}

/// The PEM sections of the text of `path`, in order.
fn sections(path: &Path, text: &str) -> Result<Vec<Section>, TlsError> {
    let mut reader = BufReader::new(text.as_bytes());
    let mut found = Vec::new();
    loop {
        match pem::from_buf(&mut reader) {
            Ok(Some(section)) => found.push(section),
            Ok(None) => break,
            Err(error) => return Err(unreadable(path, format!("not valid PEM: {error:?}"))),
        }
    }
    Ok(found)
}

/// The certificates of a PEM file, leaf first.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let sections = sections(path, &read_text(path)?)?;
    let chain: Vec<_> = sections
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(chain)
}

/// The text of the first PEM block labelled `label`.
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

/// Reads the private key, decrypting it with `passphrase` when needed.
pub fn read_key(path: &Path, passphrase: Option<&str>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read_text(path)?;
    // Legacy encrypted PEM has headers a PEM parser rejects: recognise it first.
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(TlsError::LegacyEncryption {
            path: path.to_owned(),
        });
    }
    let sections = sections(path, &text)?;
    if let Some(block) = pem_block(&text, "ENCRYPTED PRIVATE KEY") {
        let passphrase = passphrase.ok_or_else(|| TlsError::NeedsPassphrase(path.to_owned()))?;
        let (_, document) = Document::from_pem(block).map_err(|e| unreadable(path, e))?;
        let info = EncryptedPrivateKeyInfoRef::try_from(document.as_bytes())
            .map_err(|e| unreadable(path, e))?;
        let decrypted = info
            .decrypt(passphrase)
            .map_err(|_| TlsError::WrongPassphrase(path.to_owned()))?;
        return Ok(PrivatePkcs8KeyDer::from(decrypted.as_bytes().to_vec()).into());
    }
    sections
        .into_iter()
        .find_map(|(kind, der)| match kind {
            SectionKind::PrivateKey => Some(PrivatePkcs8KeyDer::from(der).into()),
            SectionKind::RsaPrivateKey => Some(PrivatePkcs1KeyDer::from(der).into()),
            SectionKind::EcPrivateKey => Some(PrivateSec1KeyDer::from(der).into()),
            _ => None,
        })
        .ok_or_else(|| TlsError::NoKey(path.to_owned()))
}

/// A certificate chain with its key, ready to serve.
#[derive(Debug, Clone)]
pub struct CertifiedPair {
    pub certified: Arc<CertifiedKey>,
    /// The subjects in the order the file listed them, when flarum-ws had
    /// to reorder them.
    pub file_order: Option<Vec<String>>,
}

/// Loads the pair, puts the chain in sending order and checks the key
/// belongs to the server certificate.
pub fn load_certified_key(files: &TlsFiles) -> Result<CertifiedPair, TlsError> {
    let OrderedChain {
        certificates: chain,
        file_order,
    } = order_chain(read_chain(&files.cert)?);
    let passphrase = files.passphrase.as_ref().map(|p| p.expose());
    let key = read_key(&files.key, passphrase)?;
    let signing_key =
        any_supported_type(&key).map_err(|_| TlsError::UnsupportedKey(files.key.clone()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|_| TlsError::KeyMismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
    })?;
    Ok(CertifiedPair {
        certified: Arc::new(certified),
        file_order,
    })
}
