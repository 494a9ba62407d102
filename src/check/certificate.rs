//! Certificate checks: readable files, key matches, chain complete, expiry,
//! names, self-signed versus the switch.

use std::path::Path;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::Finding;
use super::service_user::ServiceUser;
use crate::access::can_read;
use crate::config::Settings;
use crate::tls::{
    TlsError, Validity, intermediate_concerns, load_certified_key, order_chain, read_chain,
    validity,
};

/// Whether `pattern` (a SAN entry, maybe `*.example.com`) covers `host`.
fn name_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(_, rest)| rest == suffix),
        None => pattern == host,
    }
}

/// Whether the service's account can read the certificate and the key.
fn check_access(settings: &Settings, user: &Result<ServiceUser, String>) -> Option<Finding> {
    let files = settings.tls.as_ref()?;
    let user = match user {
        Ok(user) => user,
        Err(problem) => {
            return Some(Finding::fail(
                "access",
                problem.clone(),
                "pass --user with the account flarum-ws runs as",
            ));
        }
    };
    for path in [&files.cert, &files.key] {
        if let Err(blocked) = can_read(&user.account, path) {
            return Some(user.blocked(&blocked));
        }
    }
    Some(Finding::pass(
        "access",
        format!(
            "{} can read the certificate and the key ({})",
            user.account.name, user.source
        ),
    ))
}

fn key_finding(error: &TlsError) -> Finding {
    let check = match error {
        TlsError::KeyMismatch { .. } => "key matches",
        _ => "private key",
    };
    Finding::fail(check, error.to_string(), error.fix())
}

/// The findings on the certificate and key TLS is served with, in the
/// order an admin fixes them (none without TLS).
pub fn check_certificate(
    settings: &Settings,
    host: Option<&str>,
    user: &Result<ServiceUser, String>,
) -> Vec<Finding> {
    let Some(files) = &settings.tls else {
        return Vec::new();
    };
    let mut findings: Vec<Finding> = check_access(settings, user).into_iter().collect();
    let file_chain = match read_chain(&files.cert) {
        Ok(chain) => chain,
        Err(error) => {
            findings.push(Finding::fail("certificate", error.to_string(), error.fix()));
            return findings;
        }
    };
    findings.push(Finding::pass(
        "certificate",
        format!(
            "{} holds {} certificate(s)",
            files.cert.display(),
            file_chain.len()
        ),
    ));
    match load_certified_key(files) {
        Ok(_) => findings.push(Finding::pass(
            "key matches",
            "the private key belongs to the certificate",
        )),
        Err(error) => findings.push(key_finding(&error)),
    }
    let ordered = order_chain(file_chain);
    let chain = &ordered.certificates;
    let parsed: Vec<X509Certificate<'_>> = chain
        .iter()
        .filter_map(|der| X509Certificate::from_der(der.as_ref()).ok().map(|(_, c)| c))
        .collect();
    let Some(leaf) = parsed.first() else {
        findings.push(Finding::fail(
            "certificate",
            "the certificate cannot be parsed",
            "replace the file with a valid PEM certificate",
        ));
        return findings;
    };
    let self_signed = leaf.subject().as_raw() == leaf.issuer().as_raw();

    findings.push(chain_finding(
        &files.cert,
        &parsed,
        ordered.file_order.as_deref(),
        self_signed,
    ));
    findings.push(expiry_finding(chain.first().and_then(validity)));
    findings.extend(intermediate_expiry(&files.cert, chain));
    findings.push(names_finding(host, &covered_names(leaf)));
    findings.push(self_signed_finding(self_signed, settings.self_signed));
    findings
}

/// Whether each certificate is issued by the next one in the file.
fn chain_finding(
    cert: &Path,
    parsed: &[X509Certificate<'_>],
    file_order: Option<&[String]>,
    self_signed: bool,
) -> Finding {
    let leaf = &parsed[0];
    if !self_signed && parsed.len() == 1 {
        return Finding::fail(
            "chain",
            format!(
                "{} holds only the server certificate, not the intermediate that issued it ({})",
                cert.display(),
                leaf.issuer()
            ),
            "use the full-chain file (Let's Encrypt: fullchain.pem, not cert.pem); browsers fail with ERR_SSL_VERSION_OR_CIPHER_MISMATCH or an untrusted-certificate error otherwise",
        );
    }
    if let Some(pair) = parsed
        .windows(2)
        .find(|w| w[0].issuer().as_raw() != w[1].subject().as_raw())
    {
        return Finding::fail(
            "chain",
            format!(
                "the chain is broken: {} is not issued by {}, the next certificate in {}",
                pair[0].subject(),
                pair[1].subject(),
                cert.display()
            ),
            "use the full-chain file your certificate authority issued (Let's Encrypt: fullchain.pem)",
        );
    }
    if let Some(file_order) = file_order {
        return Finding::warn(
            "chain",
            format!(
                "{} lists the chain out of order ({}); flarum-ws sends it server certificate first, so browsers are served",
                cert.display(),
                file_order.join(" | ")
            ),
            "list the server certificate first, then each intermediate in order (as fullchain.pem does), so that other servers read the file too",
        );
    }
    Finding::pass(
        "chain",
        format!("complete ({} certificate(s))", parsed.len()),
    )
}

fn expiry_finding(validity: Option<Validity>) -> Finding {
    match validity {
        Some(Validity::Expired { on }) => Finding::fail(
            "expiry",
            format!("the certificate expired on {on}"),
            "renew it (certbot renew); flarum-ws picks up renewed files by itself",
        ),
        Some(Validity::NotYetValid { from }) => Finding::fail(
            "expiry",
            format!("the certificate is valid only from {from}"),
            "check the server's clock",
        ),
        Some(Validity::ExpiresSoon { days_left, on }) => Finding::warn(
            "expiry",
            format!("the certificate expires in {days_left} day(s), on {on}"),
            "renew it soon (certbot renew); flarum-ws picks up renewed files by itself",
        ),
        Some(Validity::Valid { days_left }) => {
            Finding::pass("expiry", format!("valid for {days_left} more days"))
        }
        None => Finding::fail(
            "expiry",
            "the certificate's dates cannot be read",
            "replace the file with a valid PEM certificate",
        ),
    }
}

/// Every intermediate's dates, not only the server certificate's: a stale
/// chain file keeps an expired intermediate while the leaf is renewed, and
/// browsers refuse the chain although the leaf is valid.
fn intermediate_expiry(
    cert: &Path,
    chain: &[rustls::pki_types::CertificateDer<'_>],
) -> Vec<Finding> {
    let stale = "the chain file is stale: use the full chain your certificate authority issues now (Let's Encrypt: the current fullchain.pem, not a copy of an old one); flarum-ws picks up the new file by itself";
    intermediate_concerns(chain)
        .into_iter()
        .filter_map(|(subject, concern)| {
            Some(match concern {
            Validity::Expired { on } => Finding::fail(
                "expiry",
                format!(
                    "the intermediate certificate {subject} in {} expired on {on}; the server certificate itself is not the problem",
                    cert.display()
                ),
                stale,
            ),
            Validity::NotYetValid { from } => Finding::fail(
                "expiry",
                format!(
                    "the intermediate certificate {subject} in {} is valid only from {from}",
                    cert.display()
                ),
                "check the server's clock",
            ),
            Validity::ExpiresSoon { days_left, on } => Finding::warn(
                "expiry",
                format!(
                    "the intermediate certificate {subject} in {} expires in {days_left} day(s), on {on}",
                    cert.display()
                ),
                stale,
            ),
            Validity::Valid { .. } => return None,
            })
        })
        .collect()
}

/// The DNS names and IPv4 addresses the certificate is for.
fn covered_names(leaf: &X509Certificate<'_>) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) if bytes.len() == 4 => {
                    names.push(format!(
                        "{}.{}.{}.{}",
                        bytes[0], bytes[1], bytes[2], bytes[3]
                    ));
                }
                _ => {}
            }
        }
    }
    names
}

/// Whether the certificate covers the host browsers connect to.
fn names_finding(host: Option<&str>, names: &[String]) -> Finding {
    match host {
        Some(host) if names.iter().any(|n| name_matches(n, host)) => {
            Finding::pass("names", format!("the certificate covers {host}"))
        }
        Some(host) => Finding::fail(
            "names",
            format!(
                "the certificate is for {} but browsers connect to {host}",
                shown_names(names)
            ),
            format!(
                "use a certificate for {host}, or set the extension's host (app_host) to a name the certificate covers"
            ),
        ),
        None => Finding::warn(
            "names",
            format!(
                "no host to compare with (the certificate covers {})",
                shown_names(names)
            ),
            "set the extension's host (app_host) or the forum url in config.php",
        ),
    }
}

/// The certificate against the extension's "Self-Signed Certificate
/// Support" switch.
fn self_signed_finding(self_signed: bool, switch: bool) -> Finding {
    match (self_signed, switch) {
        (true, false) => Finding::fail(
            "self-signed",
            "the certificate is self-signed but \"Self-Signed Certificate Support\" is off",
            "turn the switch on (browsers must also trust the certificate), or use a certificate from a CA such as Let's Encrypt",
        ),
        (false, true) => Finding::warn(
            "self-signed",
            "\"Self-Signed Certificate Support\" is on but the certificate is CA-issued",
            "turn the switch off so the forum verifies the certificate",
        ),
        _ => Finding::pass(
            "self-signed",
            if self_signed {
                "self-signed, and the switch is on"
            } else {
                "issued by a CA"
            },
        ),
    }
}

/// The names a certificate covers, for messages.
fn shown_names(names: &[String]) -> String {
    if names.is_empty() {
        "no host name (it has no subject alternative names)".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("*.example.com", "forum.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(name_matches("Forum.Example.com", "forum.example.com"));
    }
}
