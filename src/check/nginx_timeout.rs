//! Whether the nginx in front of flarum-ws would cut idle websockets, and
//! whether it names the client in the header flarum-ws believes.
//!
//! nginx closes a proxied websocket when nothing has passed for
//! `proxy_read_timeout` (60 s when unset). An idle forum tab carries traffic
//! once per `activity_timeout` (pusher-js's ping or flarum-ws's), so a read
//! timeout not comfortably above it cuts every idle tab. This takes the
//! configuration nginx loads (`nginx_config`), finds the blocks whose
//! `proxy_pass` goes to flarum-ws's port on this machine (directly or
//! through an `upstream`), and judges the read timeout each one inherits
//! from `http` through `server` to `location`, and the `proxy_set_header`
//! lines it inherits (nginx's rule: a block that sets none takes all of the
//! enclosing level's, one that sets any takes none).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Finding;
use super::nginx_config::{NginxConfig, Read, Token};
use crate::config::{ClientAddressHeader, Settings, proxy_read_timeout_secs};

/// nginx's own `proxy_read_timeout` when no block sets one.
const NGINX_DEFAULT: Duration = Duration::from_secs(60);

/// Time a ping or its answer may take on the way, on top of the keepalive.
const MARGIN: Duration = Duration::from_secs(5);

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

/// The files read when `--nginx-conf` names none and nginx cannot be asked.
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
pub fn check_nginx_client_address(config: &NginxConfig, settings: &Settings) -> Vec<Finding> {
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
    for stream in &config.streams {
        let blocks = proxy_blocks(stream, settings.port);
        if let Some(block) = blocks.iter().find(|b| !names_the_client(b, header)) {
            findings.push(Finding::warn(
                "client address",
                format!(
                    "{}: the block that proxies to flarum-ws (port {}) does not set {shown_header} to the client's address, and flarum-ws trusts this proxy's {shown_header} (client_address_header): the header arrives as the client wrote it, so one client can claim a new address on every connection and escape the per-address limits",
                    config.place(block.file, block.line), settings.port
                ),
                format!(
                    "add proxy_set_header {shown_header} {value}; to that block, then nginx -t && systemctl reload nginx"
                ),
            ));
        } else if let Some(block) = blocks.first() {
            findings.push(Finding::pass(
                "client address",
                format!(
                    "{}: the proxy names the client in {shown_header}, the one header flarum-ws reads",
                    config.place(block.file, block.line)
                ),
            ));
        }
    }
    findings
}

/// One block that proxies to flarum-ws, and the read timeout it gets.
#[derive(Debug, PartialEq)]
struct ProxyBlock {
    /// File and line of its `proxy_pass`.
    file: usize,
    line: usize,
    /// The timeout in force and the file and line that set it (`None`:
    /// nginx's default).
    timeout: Duration,
    set_at: Option<(usize, usize)>,
    /// The headers it sets (lower case) and the variable each is set to.
    headers: Vec<(String, String)>,
}

/// Where nginx proxies to `port` on this machine (`file:line` of the first
/// such `proxy_pass`), if it does.
pub fn proxied_at(config: &NginxConfig, port: u16) -> Option<String> {
    config.streams.iter().find_map(|stream| {
        proxy_blocks(stream, port)
            .first()
            .map(|block| config.place(block.file, block.line))
    })
}

/// A finding per configuration that proxies to `port` on this machine.
/// Where nginx's own configuration has no such block, that is said (and is
/// a warning in reverse-proxy mode, where browsers must come through a
/// proxy); where only files could be read, nothing is said of them.
pub fn check_nginx_timeouts(
    config: &NginxConfig,
    port: u16,
    activity_timeout: Duration,
    pong_timeout: Duration,
    reverse_proxy: bool,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut any = false;
    for stream in &config.streams {
        let blocks = proxy_blocks(stream, port);
        any |= !blocks.is_empty();
        let short: Vec<&ProxyBlock> = blocks
            .iter()
            .filter(|b| b.timeout < activity_timeout + MARGIN)
            .collect();
        if let Some(block) = short.first() {
            let set = match block.set_at {
                Some((file, line)) if file == block.file => format!(
                    "proxy_read_timeout {} s (line {line})",
                    block.timeout.as_secs()
                ),
                Some((file, line)) => format!(
                    "proxy_read_timeout {} s (inherited from {})",
                    block.timeout.as_secs(),
                    config.place(file, line)
                ),
                None => format!(
                    "nginx's default proxy_read_timeout of {} s",
                    block.timeout.as_secs()
                ),
            };
            findings.push(Finding::warn(
                "proxy timeout",
                format!(
                    "{}: the block that proxies to flarum-ws (port {port}) has {set}, not above the keepalive (activity_timeout {} s): nginx cuts idle tabs, which reconnect and miss events",
                    config.place(block.file, block.line),
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
                    "{}: proxy_read_timeout {} s is above the keepalive (activity_timeout {} s)",
                    config.place(block.file, block.line),
                    block.timeout.as_secs(),
                    activity_timeout.as_secs()
                ),
            ));
        }
    }
    if !any && config.read == Some(Read::Nginx) {
        let message = format!(
            "nginx's configuration (nginx -T) has no proxy_pass to flarum-ws's port {port} on this machine"
        );
        findings.push(if reverse_proxy {
            Finding::warn(
                "proxy timeout",
                format!("{message}, yet flarum-ws runs in reverse-proxy mode: browsers can reach it only through a proxy"),
                "add the block flarum-ws nginx-snippet prints to the forum's server block, then nginx -t && systemctl reload nginx",
            )
        } else {
            Finding::pass(
                "proxy timeout",
                format!("{message}: browsers connect to flarum-ws directly"),
            )
        });
    }
    findings
}

/// Each statement of a token stream: its words, where it starts, and what
/// ends it (`;`, `{` or `}`).
fn statements(tokens: &[Token]) -> Vec<(Vec<&str>, &Token, &str)> {
    let mut out = Vec::new();
    let mut words: Vec<&str> = Vec::new();
    let mut first: Option<&Token> = None;
    for token in tokens {
        match token.text.as_str() {
            end @ (";" | "{" | "}") => {
                out.push((
                    std::mem::take(&mut words),
                    first.take().unwrap_or(token),
                    end,
                ));
            }
            word => {
                first.get_or_insert(token);
                words.push(word);
            }
        }
    }
    out
}

/// `upstream NAME { server ADDRESS …; }` blocks: each name and whether one
/// of its servers is `port` on this machine.
fn upstreams(tokens: &[Token], port: u16) -> Vec<(String, bool)> {
    let mut found = Vec::new();
    let mut current: Option<(String, bool)> = None;
    for (words, _, end) in statements(tokens) {
        match (words.as_slice(), end) {
            (["upstream", name], "{") => current = Some(((*name).to_owned(), false)),
            (["server", address, ..], ";") => {
                if let Some((_, local)) = current.as_mut() {
                    *local |= is_local_port(address, port);
                }
            }
            (_, "}") => found.extend(current.take()),
            _ => {}
        }
    }
    found
}

/// Every block proxying to `port` on this machine (directly or through an
/// `upstream`), with the read timeout it inherits from itself and the
/// blocks around it.
fn proxy_blocks(tokens: &[Token], port: u16) -> Vec<ProxyBlock> {
    // Per open block: the timeout set in it (and where), and its proxy_passes.
    #[derive(Default)]
    struct Open {
        timeout: Option<(Duration, (usize, usize))>,
        passes: Vec<(usize, usize)>,
        /// `None` while the block sets no header of its own.
        headers: Option<Vec<(String, String)>>,
    }
    let upstreams = upstreams(tokens, port);
    let mut stack = vec![Open::default()];
    let mut found = Vec::new();
    let close = |open: Open, stack: &[Open], found: &mut Vec<ProxyBlock>| {
        let inherited = std::iter::once(&open)
            .chain(stack.iter().rev())
            .find_map(|o| o.timeout);
        let headers = std::iter::once(&open)
            .chain(stack.iter().rev())
            .find_map(|o| o.headers.clone())
            .unwrap_or_default();
        for (file, line) in open.passes {
            found.push(ProxyBlock {
                file,
                line,
                timeout: inherited.map_or(NGINX_DEFAULT, |(t, _)| t),
                set_at: inherited.map(|(_, at)| at),
                headers: headers.clone(),
            });
        }
    };
    for (words, at, end) in statements(tokens) {
        match end {
            "{" => stack.push(Open::default()),
            "}" => {
                if stack.len() > 1 {
                    let open = stack.pop().expect("more than one open block");
                    close(open, &stack, &mut found);
                }
            }
            _ => {
                let current = stack.last_mut().expect("the file's own block");
                let place = (at.file, at.line);
                match words.as_slice() {
                    ["proxy_read_timeout", time, ..] => {
                        if let Some(timeout) = parse_time(time) {
                            current.timeout = Some((timeout, place));
                        }
                    }
                    ["proxy_pass", url, ..] if proxies_to(url, port, &upstreams) => {
                        current.passes.push(place);
                    }
                    ["proxy_set_header", name, value, ..] => {
                        current
                            .headers
                            .get_or_insert_with(Vec::new)
                            .push((name.to_ascii_lowercase(), (*value).to_owned()));
                    }
                    _ => {}
                }
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
    found.sort_by_key(|b| (b.file, b.line));
    found
}

/// Whether `url` (a proxy_pass target) is flarum-ws's port on this
/// machine, or an upstream one of whose servers is.
fn proxies_to(url: &str, port: u16, upstreams: &[(String, bool)]) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    is_local_port(authority, port)
        || upstreams
            .iter()
            .any(|(name, local)| *local && name == authority)
}

/// Whether `authority` (`host:port`) is `port` on this machine.
fn is_local_port(authority: &str, port: u16) -> bool {
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

    fn blocks_of(text: &str, port: u16) -> Vec<ProxyBlock> {
        proxy_blocks(&super::super::nginx_config::tokens(text, 0), port)
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
            blocks_of(KYRNE, 2083),
            vec![ProxyBlock {
                file: 0,
                line: 11,
                timeout: Duration::from_secs(60),
                set_at: Some((0, 13)),
                headers: vec![
                    ("host".into(), "$host".into()),
                    ("connection".into(), "upgrade".into())
                ],
            }]
        );
        assert_eq!(blocks_of(KYRNE, 6001), vec![]);
    }

    #[test]
    fn a_block_without_a_timeout_inherits_the_servers_or_nginxs_default() {
        let server = "server {\n  proxy_read_timeout 2m; # for every location\n  location /app/ {\n    proxy_pass http://localhost:6001/;\n  }\n}\n";
        let blocks = blocks_of(server, 6001);
        assert_eq!(blocks[0].timeout, Duration::from_secs(120));
        assert_eq!(blocks[0].set_at, Some((0, 2)));
        let bare = "location /app/ { proxy_pass http://[::1]:6001; }";
        let blocks = blocks_of(bare, 6001);
        assert_eq!(blocks[0].timeout, NGINX_DEFAULT);
        assert_eq!(blocks[0].set_at, None);
    }

    #[test]
    fn headers_are_inherited_only_by_blocks_that_set_none() {
        let server = "server {\n  proxy_set_header X-Real-IP $remote_addr;\n  location /app/ {\n    proxy_pass http://127.0.0.1:6001;\n  }\n  location /apps/ {\n    proxy_set_header Host $host;\n    proxy_pass http://127.0.0.1:6001;\n  }\n}\n";
        let blocks = blocks_of(server, 6001);
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
        let config = NginxConfig::from_files(&[file]);
        let thirty = Duration::from_secs(30);
        let passed = check_nginx_timeouts(&config, 2083, thirty, thirty, false);
        assert_eq!(passed.len(), 1);
        assert_eq!(passed[0].status, super::super::Status::Pass);
        let warned = check_nginx_timeouts(&config, 2083, Duration::from_secs(120), thirty, false);
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
        assert!(check_nginx_timeouts(&config, 9999, thirty, thirty, false).is_empty());
    }

    /// What nginx -T shows: a timeout at http level in conf.d reaches the
    /// site's location, and an upstream's server counts as flarum-ws's port.
    #[test]
    fn nginx_s_own_configuration_is_judged_whole() {
        use super::super::nginx_config::NginxDump;
        let dump = NginxDump {
            files: vec![
                ("/etc/nginx/nginx.conf".into(), "http {\n  include /etc/nginx/conf.d/*.conf;\n  include /etc/nginx/sites-enabled/*;\n}\n".into()),
                ("/etc/nginx/conf.d/slow.conf".into(), "proxy_read_timeout 20s;\nupstream flarum_ws { server 127.0.0.1:2083; }\n".into()),
                ("/etc/nginx/sites-enabled/forum".into(), "server {\n  location /app/ {\n    proxy_pass http://flarum_ws;\n  }\n}\n".into()),
            ],
        };
        let config = NginxConfig::from_dump(&dump);
        let thirty = Duration::from_secs(30);
        let warned = check_nginx_timeouts(&config, 2083, thirty, thirty, true);
        assert_eq!(warned.len(), 1);
        assert_eq!(warned[0].status, super::super::Status::Warn);
        assert!(
            warned[0]
                .message
                .contains("/etc/nginx/sites-enabled/forum:3")
                && warned[0]
                    .message
                    .contains("inherited from /etc/nginx/conf.d/slow.conf:1"),
            "{:?}",
            warned[0]
        );
        let none = check_nginx_timeouts(&config, 6001, thirty, thirty, true);
        assert!(
            none[0]
                .message
                .contains("no proxy_pass to flarum-ws's port 6001"),
            "{none:?}"
        );
    }
}
