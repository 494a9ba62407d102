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
    ("cluster", &["hub", "protocol", "throttle"]),
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

    /// `text` with its comments blanked out (`//` to the line's end, `/*`
    /// to `*/`), string literals kept as they are, so that a path named in
    /// a comment is not an arrow.
    fn without_comments(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    out.push(c);
                    while let Some(d) = chars.next() {
                        out.push(d);
                        match d {
                            '\\' => out.extend(chars.next()),
                            '"' => break,
                            _ => {}
                        }
                    }
                }
                '\'' => {
                    // A char literal ('"', '\'') is copied whole, so its quote
                    // does not open a string; a lifetime ('a) is one quote.
                    out.push(c);
                    let ahead: Vec<char> = chars.clone().take(3).collect();
                    let literal = match ahead.as_slice() {
                        ['\\', _, '\''] => 3,
                        [_, '\'', ..] => 2,
                        _ => 0,
                    };
                    for _ in 0..literal {
                        out.extend(chars.next());
                    }
                }
                '/' if chars.peek() == Some(&'/') => {
                    while chars.peek().is_some_and(|&d| d != '\n') {
                        chars.next();
                    }
                }
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    let mut last = ' ';
                    for d in chars.by_ref() {
                        if last == '*' && d == '/' {
                            break;
                        }
                        last = d;
                    }
                    out.push(' ');
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// `code` without its test modules: each `#[cfg(test)]` followed by
    /// `mod NAME {`, up to the brace that closes it. Anything else after a
    /// `#[cfg(test)]` stays and counts.
    fn without_test_modules(code: &str) -> String {
        const MARK: &str = "#[cfg(test)]";
        let mut out = String::new();
        let mut rest = code;
        while let Some(at) = rest.find(MARK) {
            let after = &rest[at + MARK.len()..];
            let is_module = after
                .trim_start()
                .strip_prefix("mod ")
                .map(|m| {
                    m.trim_start()
                        .trim_start_matches(|c: char| c.is_alphanumeric() || c == '_')
                })
                .is_some_and(|m| m.trim_start().starts_with('{'));
            if !is_module {
                out.push_str(&rest[..at + MARK.len()]);
                rest = after;
                continue;
            }
            out.push_str(&rest[..at]);
            let open = after.find('{').expect("a module's brace");
            let mut depth = 0;
            let mut end = after.len();
            for (i, c) in after[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            rest = &after[end..];
        }
        out.push_str(rest);
        out
    }

    /// The identifier at the start of `text`.
    fn identifier(text: &str) -> String {
        text.trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    }

    /// The first identifier of each entry of the `{a, b::c, d}` group that
    /// `text` starts with (a nested group's entries belong to its parent).
    fn group_heads(text: &str) -> Vec<String> {
        let mut heads = Vec::new();
        let mut depth = 0;
        let mut at_entry_start = true;
        for (i, c) in text.char_indices() {
            match c {
                '{' => {
                    depth += 1;
                    at_entry_start = depth == 1;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => at_entry_start = true,
                c if depth == 1 && at_entry_start && !c.is_whitespace() => {
                    heads.push(identifier(&text[i..]));
                    at_entry_start = false;
                }
                _ => {}
            }
        }
        heads
    }

    /// The top-level modules named where `after` follows the crate root
    /// (`crate::`, or enough `super::`): one, or a group's.
    fn top_level_names(after: &str) -> Vec<String> {
        let after = after.trim_start();
        if after.starts_with('{') {
            group_heads(after)
        } else {
            vec![identifier(after)]
        }
    }

    /// The top-level modules named in `text`, the file at `module_path`
    /// (`["hub", "link"]` for src/hub/link.rs, `["hub"]` for
    /// src/hub/mod.rs): through `crate::`, and through `super::` chains
    /// that climb to the crate root; comments and test modules left out.
    fn named_modules(module_path: &[String], text: &str) -> BTreeSet<String> {
        let code = without_test_modules(&without_comments(text));
        let mut named = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            named.extend(top_level_names(&code[at + "crate::".len()..]));
        }
        for (at, _) in code.match_indices("super::") {
            if code[..at].ends_with("::") {
                continue; // counted with the chain it continues
            }
            let mut rest = &code[at..];
            let mut climbs = 0;
            while let Some(after) = rest.strip_prefix("super::") {
                climbs += 1;
                rest = after;
            }
            if climbs >= module_path.len() {
                named.extend(top_level_names(rest));
            }
        }
        named.retain(|name| !name.is_empty() && name != "self");
        named
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

    /// The module path of a file under src/: `hub/link.rs` → hub, link;
    /// `hub/mod.rs` → hub.
    fn module_path(relative: &Path) -> Vec<String> {
        let mut path: Vec<String> = relative
            .components()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_owned()
            })
            .collect();
        if path.last().is_some_and(|last| last == "mod") {
            path.pop();
        }
        path
    }

    /// Every arrow under `src` that ALLOWED does not allow, as
    /// `file names crate::x`.
    fn forbidden_arrows(src: &Path) -> Vec<String> {
        let mut found = Vec::new();
        files(src, &mut found);
        found.sort();
        let mut wrong = Vec::new();
        for path in found {
            let relative = path.strip_prefix(src).unwrap();
            let module_path = module_path(relative);
            let module = module_path[0].clone();
            if matches!(module.as_str(), "lib" | "main" | "layering") {
                continue;
            }
            let allowed = ALLOWED
                .iter()
                .find(|(name, _)| *name == module)
                .unwrap_or_else(|| panic!("module {module} is not in layering.rs's ALLOWED"))
                .1;
            let text = std::fs::read_to_string(&path).unwrap();
            for named in named_modules(&module_path, &text) {
                if named != module && !allowed.contains(&named.as_str()) {
                    wrong.push(format!("{} names crate::{named}", relative.display()));
                }
            }
        }
        wrong
    }

    #[test]
    fn each_module_names_only_the_modules_it_may_use() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let wrong = forbidden_arrows(&src);
        assert!(
            wrong.is_empty(),
            "arrows layering.rs does not allow:\n{}",
            wrong.join("\n")
        );
    }

    /// The test above sees every way a file can name a module: `super::`
    /// climbing to the crate root, a path after a `#[cfg(test)]` item that
    /// is not a test module, a `crate::{a, b}` group, a path after a char
    /// literal holding a quote; and it does not count a comment or what a
    /// test module names.
    #[test]
    fn the_layering_test_sees_each_way_of_naming_a_module() {
        let src = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = src.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("hub/mod.rs", "use super::telemetry::Metrics;\n");
        write(
            "hub/link.rs",
            "use super::state::Hub;\nuse super::super::server::Context;\n",
        );
        write(
            "check/unit_env.rs",
            "#[cfg(test)]\nfn helper() {}\n\nfn judge() { crate::telemetry::log(); }\n",
        );
        write(
            "protocol/mod.rs",
            "use crate::{hub::Frame, throttle};\n// crate::cli is only named in a comment\n/* crate::tls */\nconst S: &str = \"//\";\nconst Q: char = '\"';\nfn f<'a>(_: &'a str) { crate::cli::x(); }\n#[cfg(test)]\nmod tests {\n    use crate::server::Anything;\n    fn f() { let _ = { 1 }; }\n}\nfn after_tests() { crate::cluster::x(); }\n",
        );
        let mut wrong = forbidden_arrows(src.path());
        wrong.sort();
        assert_eq!(
            wrong,
            vec![
                "check/unit_env.rs names crate::telemetry",
                "hub/link.rs names crate::server",
                "hub/mod.rs names crate::telemetry",
                "protocol/mod.rs names crate::cli",
                "protocol/mod.rs names crate::cluster",
                "protocol/mod.rs names crate::hub",
                "protocol/mod.rs names crate::throttle",
            ]
        );
    }
}
