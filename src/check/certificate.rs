//! Certificate checks: readable files, key matches, chain complete, expiry,
//! names, self-signed versus the switch.

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::Finding;
use crate::config::Settings;
use crate::tls::{load_certified_key, read_chain};

/// Warn when a certificate expires sooner than this.
const EXPIRY_WARNING_DAYS: i64 = 14;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether `pattern` (a SAN entry, maybe `*.example.com`) covers `host`.
fn name_matches(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.split_once('.').is_some_and(|(_, rest)| rest == suffix),
        None => pattern == host,
    }
}

pub fn check_certificate(settings: &Settings, host: Option<&str>) -> Vec<Finding> {
    let Some(files) = &settings.tls else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    let chain = match read_chain(&files.cert) {
        Ok(chain) => chain,
        Err(error) => {
            findings.push(Finding::fail(
                "certificate",
                error.to_string(),
                "point the SSL certificate setting at the full-chain PEM file (Let's Encrypt: fullchain.pem), readable by the server's user",
            ));
            return findings;
        }
    };
    findings.push(Finding::pass(
        "certificate",
        format!(
            "{} holds {} certificate(s)",
            files.cert.display(),
            chain.len()
        ),
    ));
    match load_certified_key(files) {
        Ok(_) => findings.push(Finding::pass("key matches", "the private key belongs to the certificate")),
        Err(error) => findings.push(Finding::fail(
            "key matches",
            error.to_string(),
            "use the key file issued with this certificate (Let's Encrypt: privkey.pem next to fullchain.pem)",
        )),
    }
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

    // Chain: every certificate's issuer must be the next one's subject.
    if !self_signed && parsed.len() == 1 {
        findings.push(Finding::fail(
            "chain",
            format!("{} holds only the server certificate, not the intermediate that issued it ({})", files.cert.display(), leaf.issuer()),
            "use the full-chain file (Let's Encrypt: fullchain.pem, not cert.pem); browsers fail with ERR_SSL_VERSION_OR_CIPHER_MISMATCH or an untrusted-certificate error otherwise",
        ));
    } else if let Some(pair) = parsed
        .windows(2)
        .find(|w| w[0].issuer().as_raw() != w[1].subject().as_raw())
    {
        findings.push(Finding::fail(
            "chain",
            format!("the chain is out of order: {} is not issued by {}", pair[0].subject(), pair[1].subject()),
            "list the server certificate first, then each intermediate in order (as fullchain.pem does)",
        ));
    } else {
        findings.push(Finding::pass(
            "chain",
            format!("complete ({} certificate(s))", parsed.len()),
        ));
    }

    let not_after = leaf.validity().not_after.timestamp();
    let not_before = leaf.validity().not_before.timestamp();
    let days_left = (not_after - now()) / 86_400;
    if not_after < now() {
        findings.push(Finding::fail(
            "expiry",
            format!("the certificate expired on {}", leaf.validity().not_after),
            "renew it (certbot renew) — flarum-ws picks up renewed files by itself",
        ));
    } else if not_before > now() {
        findings.push(Finding::fail(
            "expiry",
            format!(
                "the certificate is valid only from {}",
                leaf.validity().not_before
            ),
            "check the server's clock",
        ));
    } else if days_left < EXPIRY_WARNING_DAYS {
        findings.push(Finding::warn(
            "expiry",
            format!(
                "the certificate expires in {days_left} day(s), on {}",
                leaf.validity().not_after
            ),
            "renew it soon (certbot renew); flarum-ws picks up renewed files by itself",
        ));
    } else {
        findings.push(Finding::pass(
            "expiry",
            format!("valid for {days_left} more days"),
        ));
    }

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
    match host {
        Some(host) if names.iter().any(|n| name_matches(n, host)) => {
            findings.push(Finding::pass("names", format!("the certificate covers {host}")));
        }
        Some(host) => findings.push(Finding::fail(
            "names",
            format!("the certificate is for {} but browsers connect to {host}", names.join(", ")),
            format!("use a certificate for {host}, or set the extension's host (app_host) to a name the certificate covers"),
        )),
        None => findings.push(Finding::warn(
            "names",
            format!("no host to compare with (the certificate covers {})", names.join(", ")),
            "set the extension's host (app_host) or the forum url in config.php",
        )),
    }

    match (self_signed, settings.self_signed) {
        (true, false) => findings.push(Finding::fail(
            "self-signed",
            "the certificate is self-signed but \"Self-Signed Certificate Support\" is off",
            "turn the switch on (browsers must also trust the certificate), or use a certificate from a CA such as Let's Encrypt",
        )),
        (false, true) => findings.push(Finding::warn(
            "self-signed",
            "\"Self-Signed Certificate Support\" is on but the certificate is CA-issued",
            "turn the switch off so the forum verifies the certificate",
        )),
        _ => findings.push(Finding::pass("self-signed", if self_signed { "self-signed, and the switch is on" } else { "issued by a CA" })),
    }
    findings
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
