//! The running server, asked what it loaded. The flarum-ws that serves this
//! forum's app on its port lists each setting it runs with and where it
//! came from (`/about`, from this machine only, secrets redacted); where a
//! value differs from the one `check` judged, the running server has not
//! taken an edit yet (or took it from elsewhere), which `check` says
//! instead of judging settings that are not in force.

use serde_json::Value;

use super::Finding;
use super::port::about_json;
use crate::config::Resolved;

/// The settings whose value differs between the running server and what
/// `check` judged: (key, running value and source, judged value and source).
fn differences(running: &Value, judged: &Resolved) -> Vec<String> {
    let Some(rows) = running["settings"].as_array() else {
        return Vec::new();
    };
    let shown = |value: &Value| {
        value
            .as_str()
            .map_or_else(|| "unset".to_owned(), str::to_owned)
    };
    judged
        .in_force()
        .into_iter()
        .filter_map(|now| {
            let row = rows.iter().find(|row| row["key"] == now.key)?;
            let theirs = shown(&row["value"]);
            let ours = now.value.clone().unwrap_or_else(|| "unset".to_owned());
            (theirs != ours).then(|| {
                format!(
                    "{}: running {theirs} ({}), judged {ours} ({})",
                    now.key,
                    row["source"].as_str().unwrap_or("?"),
                    now.source
                )
            })
        })
        .collect()
}

/// Whether the flarum-ws serving this forum's app on its port runs with
/// the settings judged; nothing when none answers there.
pub async fn check_running(resolved: &Resolved) -> Option<Finding> {
    let settings = &resolved.settings;
    let running = about_json(settings, settings.port).await?;
    if running["app_id"].as_str() != Some(settings.app.id.as_str()) {
        return None; // another app: the port finding says so
    }
    let pid = running["pid"].as_u64().unwrap_or_default();
    let differ = differences(&running, resolved);
    if differ.is_empty() {
        return Some(Finding::pass(
            "running",
            format!(
                "the running flarum-ws (pid {pid}) serves with the settings judged here, each from the same source"
            ),
        ));
    }
    Some(Finding::warn(
        "running",
        format!(
            "the running flarum-ws (pid {pid}) does not run with what was judged here: {}",
            differ.join("; ")
        ),
        "systemctl reload flarum-ws to apply an edit (settings marked restart in docs/configuration.md need systemctl restart flarum-ws), or find where the running value comes from",
    ))
}
