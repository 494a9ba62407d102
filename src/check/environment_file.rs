//! An `EnvironmentFile=` read by systemd's rules, for the one case where
//! systemd cannot be asked: `check` without systemd as PID 1, or with
//! `--unit FILE`. Where systemd runs, `check` judges inside a transient unit
//! and systemd reads the file itself (see `as_service`).
//!
//! The rules are systemd's (systemd.exec, "EnvironmentFile="), not a shell's
//! nor a `.env` loader's, and differ from both where admins trip: no
//! `export` (the line is ignored), `#` starts a comment only at the start of
//! a line (`A=b # c` is `b # c`), quotes count only at the start of a value
//! or right after a closing quote, unquoted spaces are kept, and `$` is never
//! expanded. `tests/fixtures/environment-file` holds a file of such lines and
//! what systemd 252 made of it; the unit test below reads it with this
//! parser and `packaging/verify.sh` reads it with the real systemd, so both
//! are held to the same answers.

/// The assignments of an environment file, in order (a later one of the
/// same name wins), and the lines systemd ignores, each with why.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvironmentFile {
    pub assignments: Vec<(String, String)>,
    pub ignored: Vec<String>,
}

#[derive(Clone, Copy)]
enum State {
    PreKey,
    Key,
    Comment,
    CommentEscape,
    PreValue,
    Value,
    ValueEscape,
    SingleQuoted,
    DoubleQuoted,
    DoubleEscape,
}

const NEWLINE: [char; 2] = ['\n', '\r'];

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t')
}

/// systemd's rule for a variable's name: letters, digits and `_`, not
/// starting with a digit.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl EnvironmentFile {
    /// Reads `text` as systemd reads an environment file.
    pub fn parse(text: &str) -> Self {
        let mut file = Self::default();
        let mut state = State::PreKey;
        let mut key = String::new();
        let mut value = String::new();
        // Length of `value` before its unescaped trailing blanks.
        let mut kept = 0;
        for c in text.chars() {
            state = match state {
                State::PreKey if c == '#' || c == ';' => State::Comment,
                State::PreKey if c.is_whitespace() => State::PreKey,
                State::PreKey => {
                    key.push(c);
                    State::Key
                }
                State::Comment if c == '\\' => State::CommentEscape,
                State::Comment if NEWLINE.contains(&c) => State::PreKey,
                State::Comment | State::CommentEscape => State::Comment,
                State::Key if c == '=' => State::PreValue,
                State::Key if NEWLINE.contains(&c) => {
                    file.ignored.push(format!("{}: no `=`", key.trim()));
                    key.clear();
                    State::PreKey
                }
                State::Key => {
                    key.push(c);
                    State::Key
                }
                State::PreValue | State::Value if NEWLINE.contains(&c) => {
                    value.truncate(kept);
                    file.assign(&mut key, &mut value);
                    kept = 0;
                    State::PreKey
                }
                State::PreValue if is_blank(c) => State::PreValue,
                State::PreValue if c == '\'' => State::SingleQuoted,
                State::PreValue if c == '"' => State::DoubleQuoted,
                State::PreValue | State::Value if c == '\\' => State::ValueEscape,
                State::PreValue | State::Value => {
                    value.push(c);
                    if !is_blank(c) {
                        kept = value.len();
                    }
                    State::Value
                }
                State::ValueEscape => {
                    if !NEWLINE.contains(&c) {
                        value.push(c);
                        kept = value.len();
                    }
                    State::Value
                }
                State::SingleQuoted if c == '\'' => {
                    kept = value.len();
                    State::PreValue
                }
                State::DoubleQuoted if c == '"' => {
                    kept = value.len();
                    State::PreValue
                }
                State::DoubleQuoted if c == '\\' => State::DoubleEscape,
                State::SingleQuoted => {
                    value.push(c);
                    State::SingleQuoted
                }
                State::DoubleQuoted => {
                    value.push(c);
                    State::DoubleQuoted
                }
                State::DoubleEscape => {
                    if "\"\\`$".contains(c) {
                        value.push(c);
                    } else if !NEWLINE.contains(&c) {
                        value.push('\\');
                        value.push(c);
                    }
                    State::DoubleQuoted
                }
            };
        }
        match state {
            State::PreKey | State::Comment | State::CommentEscape => {}
            State::Key => file.ignored.push(format!("{}: no `=`", key.trim())),
            State::PreValue | State::Value | State::ValueEscape => {
                value.truncate(kept);
                file.assign(&mut key, &mut value);
            }
            State::SingleQuoted | State::DoubleQuoted | State::DoubleEscape => {
                file.assign(&mut key, &mut value);
            }
        }
        file
    }

    fn assign(&mut self, key: &mut String, value: &mut String) {
        let name = std::mem::take(key).trim_end().to_owned();
        let value = std::mem::take(value);
        if valid_name(&name) {
            self.assignments.push((name, value));
        } else if let Some(rest) = name.strip_prefix("export ") {
            self.ignored.push(format!(
                "`{name}=`: systemd does not read `export` and ignores the line; write {}=…",
                rest.trim()
            ));
        } else {
            self.ignored.push(format!(
                "`{name}=`: not a variable name, ignored by systemd"
            ));
        }
    }

    /// The value `name` ends with (the last assignment wins).
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.assignments
            .iter()
            .rev()
            .find(|(var, _)| var == name)
            .map(|(_, value)| value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each assignment of the fixture as systemd 252 set it (`env -0` in a
    /// `systemd-run -p EnvironmentFile=` unit), read the same way.
    #[test]
    fn reads_the_fixture_as_systemd_does() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/environment-file");
        let input = std::fs::read_to_string(dir.join("input")).unwrap();
        let expected = std::fs::read(dir.join("expected.env0")).unwrap();
        let parsed = EnvironmentFile::parse(&input);
        let mut names = Vec::new();
        for entry in expected.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let entry = std::str::from_utf8(entry).unwrap();
            let (name, value) = entry.split_once('=').unwrap();
            assert_eq!(parsed.get(name), Some(value), "{name}");
            names.push(name);
        }
        for (name, _) in &parsed.assignments {
            assert!(
                names.contains(&name.as_str()),
                "systemd does not set {name}"
            );
        }
        assert!(parsed.ignored.iter().any(|why| why.contains("export")));
    }

    #[test]
    fn a_file_without_a_final_newline_keeps_its_last_line() {
        let parsed = EnvironmentFile::parse("A=1\nB=\"two words\"");
        assert_eq!(parsed.get("B"), Some("two words"));
        assert_eq!(EnvironmentFile::parse("A=x  ").get("A"), Some("x"));
    }
}
