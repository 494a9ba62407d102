//! `webhooks`: each receiver gets a signed request with no events, as the
//! server would send it, and must answer 2xx; otherwise its events would be
//! retried for five minutes and then lost.

use super::Finding;
use crate::config::Settings;
use crate::probe::ProbeError;
use crate::webhooks::{Endpoint, PostError, Signer, now_ms};

pub async fn check_webhooks(settings: &Settings) -> Vec<Finding> {
    let signer = Signer::for_app(&settings.app);
    let mut findings = Vec::new();
    for target in &settings.webhooks {
        let Some(endpoint) = Endpoint::parse(&target.url) else {
            continue;
        };
        let (body, headers) = signer.sign(&[], now_ms());
        findings.push(match endpoint.post(body, &headers).await {
            Ok(()) => Finding::pass(
                "webhooks",
                format!("{} answered a signed test request", target.url),
            ),
            Err(PostError::Answered(status @ (401 | 403))) => Finding::fail(
                "webhooks",
                format!("{} refused a signed test request ({status})", target.url),
                format!(
                    "the receiver must check signatures with this app's key ({}) and secret, the ones flarum-ws serves",
                    settings.app.key
                ),
            ),
            Err(PostError::Answered(status)) => Finding::fail(
                "webhooks",
                format!(
                    "{} answered a signed test request with {status} instead of 2xx",
                    target.url
                ),
                if status == 404 {
                    "check the URL's path: nothing answers there".to_owned()
                } else {
                    "look at the receiver's log: it must answer 2xx to POST requests with a JSON body".to_owned()
                },
            ),
            Err(PostError::Unreachable(error)) => Finding::fail(
                "webhooks",
                format!("cannot send to {}: {error}", target.url),
                unreachable_fix(&error),
            ),
        });
    }
    findings
}

/// What to do when the receiver cannot be reached (the probe's own fixes
/// are worded for reaching flarum-ws).
fn unreachable_fix(error: &ProbeError) -> String {
    match error {
        ProbeError::NoDnsRecord { .. } | ProbeError::BadName(_) => {
            "fix the host name in the webhook URL".into()
        }
        ProbeError::Refused { .. } => {
            "start the receiver, or fix the host and port in the webhook URL".into()
        }
        ProbeError::Unreachable { .. } | ProbeError::NoAnswer { .. } => {
            "the receiver must answer within 10 s: check that it runs and that no firewall drops the connection".into()
        }
        ProbeError::UntrustedIssuer { .. } => {
            "the receiver's certificate comes from an issuer flarum-ws does not trust: give it a certificate from a public CA, or name its CA with SSL_CERT_FILE in flarum-ws's environment".into()
        }
        ProbeError::PlainHttp { .. } => "the receiver speaks plain HTTP: use http:// in the URL".into(),
        _ => "check the webhook URL and the receiver's TLS setup".into(),
    }
}
