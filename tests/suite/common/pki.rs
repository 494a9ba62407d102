//! Certificates made in the test: a root CA, an intermediate CA and leaf
//! certificates for `localhost`/127.0.0.1, as a real CA chain would be.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The root CA certificate, to trust in clients.
    pub root_pem: PathBuf,
    intermediate_params: CertificateParams,
    intermediate_key: KeyPair,
    pub intermediate_pem: String,
}

/// A leaf certificate: the leaf alone, the full chain, and its key.
pub struct Leaf {
    pub cert_only: PathBuf,
    pub full_chain: PathBuf,
    pub key: PathBuf,
    pub der: Vec<u8>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl Pki {
    pub fn new() -> Self {
        Self::with_intermediate(ca_params("flarum-ws test intermediate"))
    }

    /// A PKI whose intermediate expired in 2021, as the one in a chain file
    /// copied once and never refreshed.
    pub fn with_expired_intermediate() -> Self {
        let mut params = ca_params("flarum-ws test intermediate");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        Self::with_intermediate(params)
    }

    fn with_intermediate(intermediate_params: CertificateParams) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root_params = ca_params("flarum-ws test root");
        let root_key = KeyPair::generate().unwrap();
        let root = root_params.self_signed(&root_key).unwrap();
        let root_issuer = Issuer::new(root_params, root_key);
        let intermediate_key = KeyPair::generate().unwrap();
        let intermediate = intermediate_params
            .signed_by(&intermediate_key, &root_issuer)
            .unwrap();
        let root_pem = dir.path().join("root.pem");
        std::fs::write(&root_pem, root.pem()).unwrap();
        Self {
            dir,
            root_pem,
            intermediate_params,
            intermediate_key,
            intermediate_pem: intermediate.pem(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A leaf for localhost and 127.0.0.1 named `name`; `expired` puts its
    /// validity in the past.
    pub fn leaf(&self, name: &str, expired: bool) -> Leaf {
        self.leaf_for(name, &["localhost", "127.0.0.1"], expired)
    }

    /// A leaf certificate valid for `hosts` only.
    pub fn leaf_for(&self, name: &str, hosts: &[&str], expired: bool) -> Leaf {
        let mut params = CertificateParams::new(
            hosts
                .iter()
                .map(|host| host.to_string())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.intermediate_params, &self.intermediate_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let leaf = Leaf {
            cert_only: self.path(&format!("{name}.pem")),
            full_chain: self.path(&format!("{name}-fullchain.pem")),
            key: self.path(&format!("{name}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&leaf.cert_only, cert.pem()).unwrap();
        std::fs::write(
            &leaf.full_chain,
            format!("{}{}", cert.pem(), self.intermediate_pem),
        )
        .unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        leaf
    }
}

/// Runs openssl (for key formats rcgen does not write) and returns its output file.
pub fn openssl(args: &[&str], output: &Path) -> PathBuf {
    let status = Command::new("openssl")
        .args(args)
        .status()
        .expect("openssl CLI");
    assert!(status.success(), "openssl {args:?}");
    output.to_owned()
}

impl Pki {
    /// A leaf signed for the PKCS#8 key in `key_pkcs8_pem` (written elsewhere
    /// in another format for the server to read).
    pub fn leaf_for_key(&self, name: &str, key_pkcs8_pem: &str) -> PathBuf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::from_pem(key_pkcs8_pem).unwrap();
        let issuer = Issuer::from_params(&self.intermediate_params, &self.intermediate_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let path = self.path(&format!("{name}-fullchain.pem"));
        std::fs::write(&path, format!("{}{}", cert.pem(), self.intermediate_pem)).unwrap();
        path
    }
}
