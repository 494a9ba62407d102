//! Whether the nginx in front of flarum-ws would cut idle websockets, and
//! whether it names the client in the header flarum-ws believes.
//!
//! nginx closes a proxied websocket when nothing has passed for
//! `proxy_read_timeout` (60 s when unset). An idle forum tab carries traffic
//! once per `activity_timeout` (pusher-js's ping or flarum-ws's), so a read
//! timeout not comfortably above it cuts every idle tab. This reads the nginx
//! configuration files it can (each on its own: `include` is not followed),
//! finds the blocks whose `proxy_pass` goes to flarum-ws's port on this
//! machine, and judges the read timeout each one inherits, and the
//! `proxy_set_header` lines it inherits (nginx's rule: a block that sets
//! none takes all of the enclosing level's, one that sets any takes none).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Finding;
use crate::config::{ClientAddressHeader, Settings, proxy_read_timeout_secs};

/// nginx's own `proxy_read_timeout` when no block sets one.
const NGINX_DEFAULT: Duration = Duration::from_secs(60);

/// Time a ping or its answer may take on the way, on top of the keepalive.
const MARGIN: Duration = Duration::from_secs(5);

/// The files read when `--nginx-conf` names none.
/// The most of one nginx file `check` reads (a real site's file is a few
/// KiB; the forum's `.nginx.conf` sits in a folder the web user can write).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// An nginx file's text: only a regular file (a link to one is followed,
/// as nginx does; a FIFO or device neither blocks the open nor is read) of
/// at most [`MAX_CONFIG_BYTES`]. `None` for anything else, as for a file
/// that is not there.
fn read_config(path: &Path) -> Option<String> {
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

/// The other way out, where there is one: a keepalive low enough for the
/// proxy's `timeout`, offered only when it is below the one in force.
fn lower_keepalive(timeout: Duration, activity_timeout: Duration) -> String {
    match timeout.checked_sub(MARGIN) {
        Some(fits) if fits.as_secs() >= 1 && fits < activity_timeout => format!(
            "; or lower activity_timeout (FLARUM_WS_ACTIVITY_TIMEOUT, now {} s) to {}",
            activity_timeout.as_secs(),
            fits.as_secs()
        ),
        _ => String::new(),
    }
}

pub fn default_files(forum_root: Option<&Path>) -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("/etc/nginx/nginx.conf")];
    for dir in ["/etc/nginx/conf.d", "/etc/nginx/sites-enabled"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            found.sort();
            files.extend(found.into_iter().filter(|p| {
                dir.ends_with("sites-enabled") || p.extension().is_some_and(|e| e == "conf")
            }));
        }
    }
    if let Some(root) = forum_root {
        files.push(root.join(".nginx.conf"));
    }
    files
}

/// Whether a proxy block sets `header` to the client's address as nginx
/// sees it (`$remote_addr`, or `$proxy_add_x_forwarded_for`, which appends
/// it): the only value of it flarum-ws may believe.
fn names_the_client(block: &ProxyBlock, header: ClientAddressHeader) -> bool {
    block.headers.iter().any(|(name, value)| {
        name == header.header_name()
            && (value.contains("$remote_addr") || value.contains("$proxy_add_x_forwarded_for"))
    })
}

/// For each file with a block proxying to flarum-ws: whether it names the
/// client in `client_address_header`, as a trusted proxy must (otherwise
/// it passes on what the client wrote there). Nothing when no proxy is
/// trusted (its clients then count as its own address).
pub fn check_nginx_client_address(files: &[PathBuf], settings: &Settings) -> Vec<Finding> {
    if settings.trusted_proxies.is_empty() {
        return Vec::new();
    }
    let header = settings.client_address_header;
    let shown_header = match header {
        ClientAddressHeader::XRealIp => "X-Real-IP",
        ClientAddressHeader::XForwardedFor => "X-Forwarded-For",
        ClientAddressHeader::Forwarded => "Forwarded",
    };
    let value = match header {
        ClientAddressHeader::XForwardedFor => "$proxy_add_x_forwarded_for",
        _ => "$remote_addr",
    };
    let mut findings = Vec::new();
    for file in files {
        let Some(text) = read_config(file) else {
            continue;
        };
        let blocks = proxy_blocks(&text, settings.port);
        let shown = file.display();
        if let Some(block) = blocks.iter().find(|b| !names_the_client(b, header)) {
            findings.push(Finding::warn(
                "client address",
                format!(
                    "{shown}:{}: the block that proxies to flarum-ws (port {}) does not set {shown_header} to the client's address, and flarum-ws trusts this proxy's {shown_header} (client_address_header): the header arrives as the client wrote it, so one client can claim a new address on every connection and escape the per-address limits",
                    block.line, settings.port
                ),
                format!(
                    "add proxy_set_header {shown_header} {value}; to that block, then nginx -t && systemctl reload nginx"
                ),
            ));
        } else if let Some(block) = blocks.first() {
            findings.push(Finding::pass(
                "client address",
                format!(
                    "{shown}:{}: the proxy names the client in {shown_header}, the one header flarum-ws reads",
                    block.line
                ),
            ));
        }
    }
    findings
}

/// One block that proxies to flarum-ws, and the read timeout it gets.
#[derive(Debug, PartialEq)]
struct ProxyBlock {
    /// Line of its `proxy_pass`.
    line: usize,
    /// The timeout in force and the line that set it (`None`: nginx's default).
    timeout: Duration,
    set_at: Option<usize>,
    /// The headers it sets (lower case) and the variable each is set to.
    headers: Vec<(String, String)>,
}

/// A finding per file that proxies to `port` on this machine; none when no
/// readable file does (Apache, Caddy, a proxy elsewhere).
pub fn check_nginx_timeouts(
    files: &[PathBuf],
    port: u16,
    activity_timeout: Duration,
    pong_timeout: Duration,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    for file in files {
        let Some(text) = read_config(file) else {
            continue;
        };
        let blocks = proxy_blocks(&text, port);
        let shown = file.display();
        let short: Vec<&ProxyBlock> = blocks
            .iter()
            .filter(|b| b.timeout < activity_timeout + MARGIN)
            .collect();
        if let Some(block) = short.first() {
            let set = match block.set_at {
                Some(line) => format!(
                    "proxy_read_timeout {} s (line {line})",
                    block.timeout.as_secs()
                ),
                None => format!(
                    "nginx's default proxy_read_timeout of {} s",
                    block.timeout.as_secs()
                ),
            };
            findings.push(Finding::warn(
                "proxy timeout",
                format!(
                    "{shown}:{}: the block that proxies to flarum-ws (port {port}) has {set}, not above the keepalive (activity_timeout {} s): nginx cuts idle tabs, which reconnect and miss events",
                    block.line,
                    activity_timeout.as_secs()
                ),
                format!(
                    "set proxy_read_timeout {}s; in that block, then nginx -t && systemctl reload nginx{}",
                    proxy_read_timeout_secs(activity_timeout, pong_timeout),
                    lower_keepalive(block.timeout, activity_timeout)
                ),
            ));
        } else if let Some(block) = blocks.first() {
            findings.push(Finding::pass(
                "proxy timeout",
                format!(
                    "{shown}:{}: proxy_read_timeout {} s is above the keepalive (activity_timeout {} s)",
                    block.line,
                    block.timeout.as_secs(),
                    activity_timeout.as_secs()
                ),
            ));
        }
    }
    findings
}

/// A directive or a block opener, with the line it starts on.
#[derive(Debug)]
struct Statement {
    words: Vec<String>,
    line: usize,
}

/// nginx's syntax, as far as this needs it: words, `;`, `{`, `}`, `#`
/// comments and quoted strings.
fn tokens(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<(String, usize)>, line| {
        if !word.is_empty() {
            out.push((std::mem::take(word), line));
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
                out.push((std::mem::take(&mut word), line));
            }
            ';' | '{' | '}' => {
                flush(&mut word, &mut out, line);
                out.push((c.to_string(), line));
            }
            c if c.is_whitespace() => flush(&mut word, &mut out, line),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out, line);
    out
}

/// Every block proxying to `port` on this machine, with the read timeout
/// it inherits from itself and the blocks around it.
fn proxy_blocks(text: &str, port: u16) -> Vec<ProxyBlock> {
    // Per open block: the timeout set in it (and where), and its proxy_passes.
    #[derive(Default)]
    struct Open {
        timeout: Option<(Duration, usize)>,
        passes: Vec<usize>,
        /// `None` while the block sets no header of its own.
        headers: Option<Vec<(String, String)>>,
    }
    let mut stack = vec![Open::default()];
    let mut found = Vec::new();
    let mut statement = Statement {
        words: Vec::new(),
        line: 0,
    };
    let close = |open: Open, stack: &[Open], found: &mut Vec<ProxyBlock>| {
        let inherited = std::iter::once(&open)
            .chain(stack.iter().rev())
            .find_map(|o| o.timeout);
        let headers = std::iter::once(&open)
            .chain(stack.iter().rev())
            .find_map(|o| o.headers.clone())
            .unwrap_or_default();
        for line in open.passes {
            found.push(ProxyBlock {
                line,
                timeout: inherited.map_or(NGINX_DEFAULT, |(t, _)| t),
                set_at: inherited.map(|(_, at)| at),
                headers: headers.clone(),
            });
        }
    };
    for (token, line) in tokens(text) {
        match token.as_str() {
            "{" => {
                statement.words.clear();
                stack.push(Open::default());
            }
            "}" => {
                statement.words.clear();
                if stack.len() > 1 {
                    let open = stack.pop().expect("more than one open block");
                    close(open, &stack, &mut found);
                }
            }
            ";" => {
                let words = std::mem::take(&mut statement.words);
                let current = stack.last_mut().expect("the file's own block");
                match words.first().map(String::as_str) {
                    Some("proxy_read_timeout") => {
                        if let Some(timeout) = words.get(1).and_then(|w| parse_time(w)) {
                            current.timeout = Some((timeout, statement.line));
                        }
                    }
                    Some("proxy_pass") if words.get(1).is_some_and(|url| proxies_to(url, port)) => {
                        current.passes.push(statement.line);
                    }
                    Some("proxy_set_header") if words.len() >= 3 => {
                        current
                            .headers
                            .get_or_insert_with(Vec::new)
                            .push((words[1].to_ascii_lowercase(), words[2].clone()));
                    }
                    _ => {}
                }
            }
            _ => {
                if statement.words.is_empty() {
                    statement.line = line;
                }
                statement.words.push(token);
            }
        }
    }
    while stack.len() > 1 {
        let open = stack.pop().expect("more than one open block");
        close(open, &stack, &mut found);
    }
    if let Some(open) = stack.pop() {
        close(open, &stack, &mut found);
    }
    found.sort_by_key(|b| b.line);
    found
}

/// Whether `url` (a proxy_pass target) is flarum-ws's port on this machine.
fn proxies_to(url: &str, port: u16) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let Some((host, url_port)) = authority.rsplit_once(':') else {
        return false;
    };
    let local = matches!(
        host.trim_matches(['[', ']']),
        "127.0.0.1" | "localhost" | "::1" | "0.0.0.0"
    );
    local && url_port.parse() == Ok(port)
}

/// nginx's time syntax: `60`, `60s`, `1m`, `1m30s`, `500ms`, `2h`.
fn parse_time(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds = |n: u64| Duration::from_secs(n);
        total += match unit {
            "" | "s" => seconds(number),
            "ms" => Duration::from_millis(number),
            "m" => seconds(number * 60),
            "h" => seconds(number * 3600),
            "d" => seconds(number * 86_400),
            "w" => seconds(number * 604_800),
            _ => return None,
        };
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fix offers a lower keepalive only where one fits below the
    /// proxy's timeout and below the keepalive in force.
    #[test]
    fn a_lower_keepalive_is_offered_only_where_it_helps() {
        let secs = Duration::from_secs;
        assert_eq!(
            lower_keepalive(secs(30), secs(30)),
            "; or lower activity_timeout (FLARUM_WS_ACTIVITY_TIMEOUT, now 30 s) to 25"
        );
        assert_eq!(lower_keepalive(secs(5), secs(30)), "");
        assert_eq!(lower_keepalive(secs(40), secs(30)), "");
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

    const KYRNE: &str = "map $http_upgrade $type {\n  default \"web\";\n  websocket \"ws\";\n}\nserver {\n  listen 443 ssl;\n  location / {\n    try_files /nonexistent @$type;\n  }\n  location @ws {\n    proxy_pass             http://127.0.0.1:2083;\n    proxy_set_header Host  $host;\n    proxy_read_timeout     60;\n    proxy_set_header Connection 'upgrade';\n  }\n}\n";

    #[test]
    fn times_read_as_nginx_reads_them() {
        assert_eq!(parse_time("60"), Some(Duration::from_secs(60)));
        assert_eq!(parse_time("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_time("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_time("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_time("soon"), None);
    }

    #[test]
    fn the_kyrne_block_is_found_with_its_timeout_and_line() {
        assert_eq!(
            proxy_blocks(KYRNE, 2083),
            vec![ProxyBlock {
                line: 11,
                timeout: Duration::from_secs(60),
                set_at: Some(13),
                headers: vec![
                    ("host".into(), "$host".into()),
                    ("connection".into(), "upgrade".into())
                ],
            }]
        );
        assert_eq!(proxy_blocks(KYRNE, 6001), vec![]);
    }

    #[test]
    fn a_block_without_a_timeout_inherits_the_servers_or_nginxs_default() {
        let server = "server {\n  proxy_read_timeout 2m; # for every location\n  location /app/ {\n    proxy_pass http://localhost:6001/;\n  }\n}\n";
        let blocks = proxy_blocks(server, 6001);
        assert_eq!(blocks[0].timeout, Duration::from_secs(120));
        assert_eq!(blocks[0].set_at, Some(2));
        let bare = "location /app/ { proxy_pass http://[::1]:6001; }";
        let blocks = proxy_blocks(bare, 6001);
        assert_eq!(blocks[0].timeout, NGINX_DEFAULT);
        assert_eq!(blocks[0].set_at, None);
    }

    #[test]
    fn headers_are_inherited_only_by_blocks_that_set_none() {
        let server = "server {\n  proxy_set_header X-Real-IP $remote_addr;\n  location /app/ {\n    proxy_pass http://127.0.0.1:6001;\n  }\n  location /apps/ {\n    proxy_set_header Host $host;\n    proxy_pass http://127.0.0.1:6001;\n  }\n}\n";
        let blocks = proxy_blocks(server, 6001);
        assert!(names_the_client(&blocks[0], ClientAddressHeader::XRealIp));
        assert!(!names_the_client(
            &blocks[0],
            ClientAddressHeader::XForwardedFor
        ));
        assert!(
            !names_the_client(&blocks[1], ClientAddressHeader::XRealIp),
            "a block with a proxy_set_header of its own inherits none"
        );
    }

    #[test]
    fn a_timeout_not_above_the_keepalive_warns_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("forum.conf");
        std::fs::write(&file, KYRNE).unwrap();
        let files = [file];
        let thirty = Duration::from_secs(30);
        let passed = check_nginx_timeouts(&files, 2083, thirty, thirty);
        assert_eq!(passed.len(), 1);
        assert_eq!(passed[0].status, super::super::Status::Pass);
        let warned = check_nginx_timeouts(&files, 2083, Duration::from_secs(120), thirty);
        assert_eq!(warned[0].status, super::super::Status::Warn);
        assert!(
            warned[0].message.contains("forum.conf:11"),
            "{:?}",
            warned[0]
        );
        assert!(
            warned[0]
                .fix
                .as_deref()
                .unwrap()
                .contains("proxy_read_timeout 210s;"),
            "{:?}",
            warned[0]
        );
        assert!(check_nginx_timeouts(&files, 9999, thirty, thirty).is_empty());
    }
}
