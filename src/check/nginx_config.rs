//! The nginx configuration as nginx itself loads it. Where nginx is
//! installed, `nginx -T` prints every file it reads (the main file, then
//! each included one); `check` joins them back at their `include` lines, so
//! a `proxy_read_timeout` at `http` level in conf.d reaches the site's
//! `location`, and an `upstream` defined in another file is resolved. Where
//! nginx cannot be asked (not installed, not root, a configuration nginx
//! refuses), or `--nginx-conf` names files, the files are read each on its
//! own, and the finding says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// The most of one nginx file `check` reads (a real site's file is a few
/// KiB; the forum's `.nginx.conf` sits in a folder the web user can write).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The most of `nginx -T`'s output `check` reads.
const MAX_DUMP_BYTES: u64 = 8 * 1024 * 1024;

/// How deep `include`s may nest (nginx itself has no limit; a loop would).
const MAX_INCLUDE_DEPTH: usize = 16;

/// What `nginx -T` printed, file by file, the main file first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NginxDump {
    pub files: Vec<(PathBuf, String)>,
}

/// Asks nginx for the configuration it loads (from `main`, else its
/// default file): `Ok(None)` where nginx is not installed, `Err` with
/// nginx's own words where it refuses.
pub fn dump(main: Option<&Path>) -> Result<Option<NginxDump>, String> {
    use std::io::Read;
    let mut command = Command::new("nginx");
    command.arg("-T");
    if let Some(main) = main {
        command.arg("-c").arg(main);
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot run nginx -T: {error}")),
    };
    let mut text = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout.take(MAX_DUMP_BYTES).read_to_string(&mut text);
    }
    let mut said = String::new();
    if let Some(stderr) = child.stderr.take() {
        let _ = stderr.take(64 * 1024).read_to_string(&mut said);
    }
    let _ = child.kill();
    let status = child.wait().map_err(|e| format!("nginx -T: {e}"))?;
    if !status.success() {
        let said = said
            .lines()
            .find(|line| line.contains("[emerg]"))
            .unwrap_or(said.trim());
        return Err(format!("nginx -T failed: {said}"));
    }
    Ok(Some(parse_dump(&text)))
}

/// `# configuration file PATH:` opens each file in `nginx -T`'s output.
fn parse_dump(text: &str) -> NginxDump {
    let mut dump = NginxDump::default();
    for line in text.split_inclusive('\n') {
        let header = line
            .strip_prefix("# configuration file ")
            .and_then(|rest| rest.trim_end().strip_suffix(':'));
        match (header, dump.files.last_mut()) {
            (Some(path), _) => dump.files.push((PathBuf::from(path), String::new())),
            (None, Some((_, content))) => content.push_str(line),
            (None, None) => {}
        }
    }
    dump
}

/// An nginx file's text: only a regular file (a link to one is followed,
/// as nginx does; a FIFO or device neither blocks the open nor is read) of
/// at most [`MAX_CONFIG_BYTES`]. `None` for anything else, as for a file
/// that is not there.
pub fn read_config(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() || metadata.len() > MAX_CONFIG_BYTES {
        return None;
    }
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

/// A word of nginx's syntax (or `;`, `{`, `}`), with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    /// Index into [`NginxConfig::files`].
    pub file: usize,
    pub line: usize,
}

/// How the configuration was read, for the findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// From `nginx -T`, includes joined: what nginx runs with.
    Nginx,
    /// Each file on its own (nginx could not be asked, or files named).
    Files,
}

/// The configuration to judge: one stream of tokens per independent text
/// (the whole of nginx's, or each file read).
#[derive(Debug, Default)]
pub struct NginxConfig {
    pub files: Vec<PathBuf>,
    pub streams: Vec<Vec<Token>>,
    pub read: Option<Read>,
}

impl NginxConfig {
    /// nginx's own configuration, its `include`s joined in place.
    pub fn from_dump(dump: &NginxDump) -> Self {
        let mut config = Self {
            files: dump.files.iter().map(|(path, _)| path.clone()).collect(),
            streams: Vec::new(),
            read: Some(Read::Nginx),
        };
        if !dump.files.is_empty() {
            let mut stream = Vec::new();
            expand(dump, 0, 0, &mut stream);
            config.streams.push(stream);
        }
        config
    }

    /// `files`, each read on its own.
    pub fn from_files(files: &[PathBuf]) -> Self {
        let mut config = Self {
            read: Some(Read::Files),
            ..Self::default()
        };
        for file in files {
            if let Some(text) = read_config(file) {
                config.streams.push(tokens(&text, config.files.len()));
                config.files.push(file.clone());
            }
        }
        config
    }

    /// `file:line` for the admin.
    pub fn place(&self, file: usize, line: usize) -> String {
        match self.files.get(file) {
            Some(path) => format!("{}:{line}", path.display()),
            None => format!("line {line}"),
        }
    }
}

/// `dump.files[index]`'s tokens into `out`, each `include` replaced by the
/// tokens of the dumped files it names, in the order nginx reads them.
fn expand(dump: &NginxDump, index: usize, depth: usize, out: &mut Vec<Token>) {
    let toks = tokens(&dump.files[index].1, index);
    let prefix = dump.files[0].0.parent().unwrap_or(Path::new("/"));
    let mut i = 0;
    while i < toks.len() {
        let starts_statement = i == 0 || matches!(toks[i - 1].text.as_str(), ";" | "{" | "}");
        if starts_statement
            && toks[i].text == "include"
            && toks.get(i + 2).is_some_and(|t| t.text == ";")
            && depth < MAX_INCLUDE_DEPTH
        {
            let pattern = prefix.join(&toks[i + 1].text);
            let pattern = glob::Pattern::new(&pattern.to_string_lossy()).ok();
            let mut included: Vec<usize> = (0..dump.files.len())
                .filter(|&f| {
                    pattern
                        .as_ref()
                        .is_some_and(|p| p.matches_path(&dump.files[f].0))
                })
                .collect();
            included.sort_by(|a, b| dump.files[*a].0.cmp(&dump.files[*b].0));
            for file in included {
                expand(dump, file, depth + 1, out);
            }
            i += 3;
            continue;
        }
        out.push(toks[i].clone());
        i += 1;
    }
}

/// nginx's syntax, as far as `check` needs it: words, `;`, `{`, `}`, `#`
/// comments and quoted strings.
pub fn tokens(text: &str, file: usize) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Token>, line| {
        if !word.is_empty() {
            out.push(Token {
                text: std::mem::take(word),
                file,
                line,
            });
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                flush(&mut word, &mut out, line);
                line += 1;
            }
            '#' if word.is_empty() => {
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '"' | '\'' if word.is_empty() => {
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    if q == '\n' {
                        line += 1;
                    }
                    word.push(q);
                }
                out.push(Token {
                    text: std::mem::take(&mut word),
                    file,
                    line,
                });
            }
            ';' | '{' | '}' => {
                flush(&mut word, &mut out, line);
                out.push(Token {
                    text: c.to_string(),
                    file,
                    line,
                });
            }
            c if c.is_whitespace() => flush(&mut word, &mut out, line),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out, line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn includes_are_joined_where_they_stand() {
        let text = "# configuration file /etc/nginx/nginx.conf:\nhttp {\n  include conf.d/*.conf;\n  include /etc/nginx/sites-enabled/*;\n}\n\n# configuration file /etc/nginx/conf.d/timeouts.conf:\nproxy_read_timeout 20s;\n\n# configuration file /etc/nginx/sites-enabled/forum:\nserver { }\n";
        let dump = parse_dump(text);
        assert_eq!(dump.files.len(), 3);
        let config = NginxConfig::from_dump(&dump);
        let words: Vec<&str> = config.streams[0].iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            words,
            [
                "http",
                "{",
                "proxy_read_timeout",
                "20s",
                ";",
                "server",
                "{",
                "}",
                "}"
            ]
        );
        assert_eq!(
            config.place(config.streams[0][2].file, 1),
            "/etc/nginx/conf.d/timeouts.conf:1"
        );
    }

    /// A link to /dev/zero, a FIFO and a file past the limit are not read
    /// (the old reading took 2 GB for the first and hung on the second); a
    /// link to a regular file is, as nginx follows it.
    #[test]
    fn only_regular_files_of_a_bounded_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let zero = dir.path().join("zero.conf");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert_eq!(read_config(&zero), None);
        let fifo = dir.path().join("fifo.conf");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert_eq!(read_config(&fifo), None);
        let big = dir.path().join("big.conf");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_CONFIG_BYTES + 1)
            .unwrap();
        assert_eq!(read_config(&big), None);
        let site = dir.path().join("site.conf");
        std::fs::write(&site, "server { listen 80; }\n").unwrap();
        let enabled = dir.path().join("enabled.conf");
        std::os::unix::fs::symlink(&site, &enabled).unwrap();
        assert_eq!(
            read_config(&enabled).as_deref(),
            Some("server { listen 80; }\n")
        );
    }
}
