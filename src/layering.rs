//! The crate's layering, held by a test: which top-level module may name
//! which (`crate::x` outside its tests). A new arrow fails the test until
//! it is added here on purpose. The arrows marked as debts make the one
//! cycle left (hub → telemetry → cluster/webhooks → hub): the hub and the
//! senders update telemetry's counters themselves instead of being read at
//! scrape time; they are to go, not to be copied.

/// Each module and the modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("protocol", &[]),
    ("access", &[]),
    ("config", &[]),
    ("tls", &["access", "config"]),
    ("probe", &["protocol", "tls"]),
    ("forum", &["access", "config"]),
    ("loading", &["config", "forum"]),
    // Debt: telemetry.
    ("hub", &["protocol", "telemetry"]),
    ("cluster", &["hub", "protocol"]),
    // Debt: telemetry.
    (
        "webhooks",
        &["cluster", "config", "hub", "probe", "protocol", "telemetry"],
    ),
    // Debt: cluster, webhooks (their counters are read from here).
    (
        "telemetry",
        &["cluster", "config", "forum", "protocol", "webhooks"],
    ),
    (
        "server",
        &[
            "cluster",
            "config",
            "forum",
            "hub",
            "protocol",
            "telemetry",
            "webhooks",
        ],
    ),
    (
        "check",
        &[
            "access", "cluster", "config", "forum", "loading", "probe", "protocol", "server",
            "tls", "webhooks",
        ],
    ),
    (
        "cli",
        &[
            "check",
            "cluster",
            "config",
            "forum",
            "loading",
            "probe",
            "server",
            "telemetry",
            "tls",
            "webhooks",
        ],
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::ALLOWED;

    /// The `crate::x` names in `text` before its first `#[cfg(test)]`.
    fn named_modules(text: &str) -> BTreeSet<String> {
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        code.match_indices("crate::")
            .map(|(at, _)| {
                code[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect()
    }

    fn files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    #[test]
    fn each_module_names_only_the_modules_it_may_use() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        files(&src, &mut found);
        let mut wrong = Vec::new();
        for path in found {
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str();
            let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
            if matches!(module.as_str(), "lib" | "main" | "layering") {
                continue;
            }
            let allowed = ALLOWED
                .iter()
                .find(|(name, _)| *name == module)
                .unwrap_or_else(|| panic!("module {module} is not in layering.rs's ALLOWED"))
                .1;
            for named in named_modules(&std::fs::read_to_string(&path).unwrap()) {
                if named != module && !allowed.contains(&named.as_str()) {
                    wrong.push(format!("{} names crate::{named}", relative.display()));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "arrows layering.rs does not allow:\n{}",
            wrong.join("\n")
        );
    }
}
