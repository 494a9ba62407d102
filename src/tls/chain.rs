//! A certificate file's chain put in the order TLS sends it (server
//! certificate first, then each issuer), and the server certificate's
//! validity dates. A full-chain file pasted together intermediate-first is a
//! common mistake; serving it in order costs nothing, and pointing it out
//! beats a misleading "the key does not belong to the certificate".

use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;

use super::CertifiedPair;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Warn when the certificate expires sooner than this many days.
pub const EXPIRY_WARNING_DAYS: i64 = 14;

/// The chain in sending order, and whether the file had another order.
pub struct OrderedChain {
    pub certificates: Vec<CertificateDer<'static>>,
    /// The subjects in the order the file lists them, when that differs.
    pub file_order: Option<Vec<String>>,
}

fn subject_and_issuer(der: &CertificateDer<'_>) -> Option<(Vec<u8>, Vec<u8>, String)> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    Some((
        cert.subject().as_raw().to_vec(),
        cert.issuer().as_raw().to_vec(),
        cert.subject().to_string(),
    ))
}

/// Orders `chain`: the server certificate is the one that issued none of
/// the others; each next one is the issuer of the one before. Certificates
/// that fit nowhere keep their place at the end; a file that cannot be
/// parsed is left as it is.
pub fn order_chain(chain: Vec<CertificateDer<'static>>) -> OrderedChain {
    let Some(names) = chain
        .iter()
        .map(subject_and_issuer)
        .collect::<Option<Vec<_>>>()
    else {
        return OrderedChain {
            certificates: chain,
            file_order: None,
        };
    };
    let issues_another = |i: usize| {
        names
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.1 == names[i].0 && other.0 != other.1)
    };
    let Some(leaf) = (0..names.len()).find(|&i| !issues_another(i)) else {
        return OrderedChain {
            certificates: chain,
            file_order: None,
        };
    };
    let mut order = vec![leaf];
    let mut current = leaf;
    while let Some(next) =
        (0..names.len()).find(|&j| !order.contains(&j) && names[j].0 == names[current].1)
    {
        order.push(next);
        current = next;
    }
    let unplaced: Vec<usize> = (0..names.len()).filter(|j| !order.contains(j)).collect();
    order.extend(unplaced);
    if order.iter().copied().eq(0..names.len()) {
        return OrderedChain {
            certificates: chain,
            file_order: None,
        };
    }
    let file_order = names
        .iter()
        .map(|(_, _, subject)| subject.clone())
        .collect();
    let mut slots: Vec<Option<CertificateDer<'static>>> = chain.into_iter().map(Some).collect();
    let certificates = order.iter().filter_map(|&i| slots[i].take()).collect();
    OrderedChain {
        certificates,
        file_order: Some(file_order),
    }
}

/// Where the server certificate stands in its validity period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validity {
    Valid { days_left: i64 },
    ExpiresSoon { days_left: i64, on: String },
    Expired { on: String },
    NotYetValid { from: String },
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The validity of the certificate `der`, or `None` when it cannot be parsed.
pub fn validity(der: &CertificateDer<'_>) -> Option<Validity> {
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    let period = cert.validity();
    let now = now();
    let days_left = (period.not_after.timestamp() - now) / 86_400;
    Some(if period.not_after.timestamp() < now {
        Validity::Expired {
            on: period.not_after.to_string(),
        }
    } else if period.not_before.timestamp() > now {
        Validity::NotYetValid {
            from: period.not_before.to_string(),
        }
    } else if days_left < EXPIRY_WARNING_DAYS {
        Validity::ExpiresSoon {
            days_left,
            on: period.not_after.to_string(),
        }
    } else {
        Validity::Valid { days_left }
    })
}

/// The certificates after the first (the intermediates) that are expired,
/// not valid yet or in their last weeks: (subject, validity). A chain file
/// copied once and never refreshed keeps an intermediate its authority has
/// since replaced, while the server certificate in it is renewed.
pub fn intermediate_concerns(chain: &[CertificateDer<'_>]) -> Vec<(String, Validity)> {
    chain
        .iter()
        .skip(1)
        .filter_map(|der| {
            let subject = X509Certificate::from_der(der.as_ref())
                .ok()
                .map(|(_, cert)| cert.subject().to_string())?;
            match validity(der)? {
                Validity::Valid { .. } => None,
                concern => Some((subject, concern)),
            }
        })
        .collect()
}

/// Logs what serving `chain` means for browsers: an error when the
/// certificate has expired or is not valid yet, a warning in its last
/// weeks, a warning when the file lists the chain out of order.
pub fn log_concerns(path: &std::path::Path, pair: &CertifiedPair) {
    let shown = path.display();
    match pair.certified.cert.first().and_then(validity) {
        Some(Validity::Expired { on }) => tracing::error!(
            "The certificate {shown} expired on {on}: browsers refuse it and no tab can connect. Renew it (certbot renew); flarum-ws picks up the renewed file by itself"
        ),
        Some(Validity::NotYetValid { from }) => tracing::error!(
            "The certificate {shown} is valid only from {from}: browsers refuse it. Check this machine's clock"
        ),
        Some(Validity::ExpiresSoon { days_left, on }) => tracing::warn!(
            "The certificate {shown} expires in {days_left} day(s), on {on}. Renew it (certbot renew); flarum-ws picks up the renewed file by itself"
        ),
        Some(Validity::Valid { .. }) | None => {}
    }
    for (subject, concern) in intermediate_concerns(&pair.certified.cert) {
        match concern {
            Validity::Expired { on } => tracing::error!(
                "The intermediate certificate {subject} in {shown} expired on {on}: browsers that build the chain from it refuse the connection. The chain file is stale: use the full chain your certificate authority issues now (Let's Encrypt: fullchain.pem of the current certificate)"
            ),
            Validity::NotYetValid { from } => tracing::error!(
                "The intermediate certificate {subject} in {shown} is valid only from {from}. Check this machine's clock"
            ),
            Validity::ExpiresSoon { days_left, on } => tracing::warn!(
                "The intermediate certificate {subject} in {shown} expires in {days_left} day(s), on {on}: use the full chain your certificate authority issues now"
            ),
            Validity::Valid { .. } => {}
        }
    }
    if let Some(file_order) = &pair.file_order {
        tracing::warn!(
            "{shown} lists its certificates out of order ({}); flarum-ws sends them server certificate first, but list them in that order (as fullchain.pem does) for other servers",
            file_order.join(" | ")
        );
    }
}
