//! The crate's layering, held by a test: which top-level module may name
//! which (`crate::x` outside its tests). A new arrow fails the test until
//! it is added here on purpose. The modules are listed bottom up, and a
//! second test holds that each may use only modules listed above it, so
//! there is no cycle among them.

/// Each module and the modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("protocol", &[]),
    ("access", &[]),
    ("throttle", &[]),
    ("config", &[]),
    ("tls", &["access", "config"]),
    ("probe", &["protocol", "tls"]),
    ("forum", &["access", "config"]),
    ("loading", &["config", "forum"]),
    ("hub", &["protocol"]),
    ("cluster", &["hub", "protocol"]),
    (
        "webhooks",
        &["cluster", "config", "hub", "probe", "protocol", "throttle"],
    ),
    // Reads the others' totals when it reports.
    (
        "telemetry",
        &["cluster", "config", "forum", "hub", "protocol", "webhooks"],
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
            "throttle",
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

    #[test]
    fn each_module_uses_only_modules_listed_above_it() {
        for (at, (module, uses)) in ALLOWED.iter().enumerate() {
            let above: Vec<&str> = ALLOWED[..at].iter().map(|(name, _)| *name).collect();
            for used in *uses {
                assert!(
                    above.contains(used),
                    "{module} uses {used}, which is not listed above it: that arrow points back up"
                );
            }
        }
    }

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
