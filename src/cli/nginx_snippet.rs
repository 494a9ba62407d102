//! `flarum-ws nginx-snippet`: the reverse-proxy configuration of the setup
//! guide's option 1, filled in with this forum's port and paths, for nginx
//! (default), Caddy or Apache; for nginx also the one block to add beside a
//! site that is already there (a forum under a sub-path, or sharing its
//! server block).

use std::fmt::Write as _;
use std::path::PathBuf;

use super::load::{Loaded, load_as_the_service, run_as_the_service, runtime};
use super::{Exit, Failure, ProxyFormat, SnippetArgs};
use crate::forum::{Extension, realtime_client};

/// What the templates are filled with.
struct Values {
    /// Serving flarum/realtime (Flarum 2): browsers connect to the
    /// `js-client-port`, not through the forum's own server block.
    realtime: Option<RealtimePorts>,
    server_name: String,
    port: u16,
    /// Seconds nginx may wait for a frame: longer than a full ping round.
    read_timeout: u64,
    forum_root: PathBuf,
    certificate: String,
    certificate_key: String,
    listen: String,
    php_fpm: String,
    /// The path of the forum's url (`/forum`), when it is not at the root.
    sub_path: Option<String>,
}

/// Flarum 2's ports: where browsers connect and where flarum-ws listens.
struct RealtimePorts {
    /// `js-client-port` (default 6001): nginx listens here with TLS.
    public: u16,
    /// Where flarum-ws listens behind nginx: `server-port`, or 6002 when
    /// that is the public port too (then config.php must change).
    upstream: u16,
    /// Whether config.php's `websocket` array must gain server-host and
    /// server-port for flarum-ws to listen behind nginx.
    config_change: bool,
}

fn realtime_ports(loaded: &Loaded) -> Option<RealtimePorts> {
    let forum = loaded.forum.as_ref()?;
    if forum.settings.extension != Extension::Realtime {
        return None;
    }
    let public = realtime_client(&forum.config, "js").port;
    let settings = &loaded.resolved.settings;
    let behind = settings.port != public && settings.host == "127.0.0.1";
    Some(RealtimePorts {
        public,
        upstream: if behind { settings.port } else { public + 1 },
        config_change: !behind,
    })
}

fn values(loaded: &Loaded, args: &SnippetArgs) -> Values {
    let settings = &loaded.resolved.settings;
    let forum_host = loaded.forum.as_ref().and_then(|f| f.config.host());
    let server_name = args
        .server_name
        .clone()
        .or_else(|| settings.app_host.clone())
        .or(forum_host)
        .unwrap_or_else(|| "your.domain".into());
    let forum_root = args
        .forum_root
        .clone()
        .or_else(|| {
            loaded
                .forum
                .as_ref()
                .and_then(|f| f.config.path.parent().map(|p| p.to_owned()))
        })
        .unwrap_or_else(|| PathBuf::from("/var/www/flarum"));
    let effective = &loaded.resolved.effective;
    let certificate = args
        .ssl_certificate
        .clone()
        .or_else(|| effective.tls_cert.clone())
        .unwrap_or_else(|| format!("/etc/letsencrypt/live/{server_name}/fullchain.pem"));
    let certificate_key = args
        .ssl_certificate_key
        .clone()
        .or_else(|| effective.tls_key.clone())
        .unwrap_or_else(|| format!("/etc/letsencrypt/live/{server_name}/privkey.pem"));
    Values {
        realtime: realtime_ports(loaded),
        port: settings.port,
        read_timeout: crate::config::proxy_read_timeout_secs(
            settings.activity_timeout,
            settings.pong_timeout,
        ),
        server_name,
        forum_root,
        certificate,
        certificate_key,
        listen: args.listen.clone(),
        php_fpm: args.php_fpm.clone(),
        sub_path: loaded
            .forum
            .as_ref()
            .and_then(|f| f.config.url.as_deref())
            .and_then(url_path),
    }
}

/// The path of `url` without its trailing slash, if it is not the root.
fn url_path(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.find('/').map_or("", |at| &rest[at..]);
    let path = path.split(['?', '#']).next()?.trim_end_matches('/');
    (!path.is_empty()).then(|| path.to_owned())
}

/// The websocket alone, for a server block that already serves a site (or
/// a forum under a sub-path): pusher-js opens `/app/{key}` at the root of
/// the host whatever the forum's path, and `^~` keeps the site's regex
/// locations (static files, PHP) from taking it. The forum's `.nginx.conf`
/// and the site's `location /` stay as they are.
fn nginx_beside_site(v: &Values) -> String {
    let forum = match &v.sub_path {
        Some(path) => format!("the forum under {path}, "),
        None => String::new(),
    };
    format!(
        "# Inside the server {{ }} block for {name} that already serves the site ({forum}the one
         # with `listen 443 ssl`), next to its other locations. Browsers open
         # wss://{name}/app/<key> at the root of the host whatever the forum's path;
         # the site must not use /app/ itself.
         location ^~ /app/ {{
           proxy_pass             http://127.0.0.1:{port};
           proxy_http_version     1.1;
           proxy_set_header       Host $host;
           proxy_set_header       Upgrade $http_upgrade;
           proxy_set_header       Connection \"upgrade\";
           proxy_set_header       X-Real-IP $remote_addr;
           proxy_set_header       X-Forwarded-For $proxy_add_x_forwarded_for;
           proxy_set_header       X-Forwarded-Proto $scheme;
           # Longer than the server's ping interval plus its pong timeout, so
           # nginx never cuts an idle but healthy connection.
           proxy_read_timeout     {timeout};
         }}

         # Then turn on \"Reverse Proxy Support\" in the extension's settings, run
         # `nginx -t && systemctl reload nginx`, and restart flarum-ws.
",
        name = v.server_name,
        port = v.port,
        timeout = v.read_timeout,
    )
}

fn nginx_map() -> String {
    "# In the http { } context (for example /etc/nginx/conf.d/flarum-ws.conf), once:\n\
     map $http_upgrade $type {\n  default \"web\";\n  websocket \"ws\";\n}\n"
        .to_owned()
}

fn nginx_locations(v: &Values) -> String {
    format!(
        "location / {{\n  try_files /nonexistent @$type;\n}}\n\n\
         location @ws {{\n\
         \x20 proxy_pass             http://127.0.0.1:{port};\n\
         \x20 proxy_http_version     1.1;\n\
         \x20 proxy_set_header       Host $host;\n\
         \x20 proxy_set_header       Upgrade $http_upgrade;\n\
         \x20 proxy_set_header       Connection \"upgrade\";\n\
         \x20 proxy_set_header       X-Real-IP $remote_addr;\n\
         \x20 proxy_set_header       X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \x20 proxy_set_header       X-Forwarded-Proto $scheme;\n\
         \x20 # Longer than the server's ping interval plus its pong timeout, so\n\
         \x20 # nginx never cuts an idle but healthy connection.\n\
         \x20 proxy_read_timeout     {timeout};\n\
         \x20 proxy_connect_timeout  60;\n\
         \x20 proxy_redirect         off;\n\
         \x20 proxy_cache_bypass     $http_upgrade;\n\
         }}\n",
        port = v.port,
        timeout = v.read_timeout,
    )
}

/// Printed as comments, so that `--full` output is a valid nginx file.
fn nginx_dot_conf_change(v: &Values) -> String {
    format!(
        "# In {root}/.nginx.conf, rename the first location from `location /` to `location @web`:\n\
         #\n\
         #   location @web {{\n\
         #     try_files $uri $uri/ /index.php?$query_string;\n\
         #   }}\n",
        root = v.forum_root.display()
    )
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                format!("  {l}\n")
            }
        })
        .collect()
}

fn nginx(v: &Values, full: bool) -> String {
    let mut out = String::new();
    out.push_str(&nginx_map());
    out.push('\n');
    if full {
        let _ = write!(
            out,
            "server {{\n\
             \x20 listen {listen};\n\
             \x20 server_name {name};\n\
             \x20 root {root}/public;\n\
             \x20 index index.php index.html;\n\n\
             \x20 ssl_certificate {cert};\n\
             \x20 ssl_certificate_key {key};\n\n\
             \x20 include {root}/.nginx.conf;\n\n\
             \x20 location ~ \\.php$ {{\n\
             \x20   include snippets/fastcgi-php.conf;\n\
             \x20   fastcgi_pass {php};\n\
             \x20 }}\n\n\
             {locations}\
             }}\n\n",
            listen = v.listen,
            name = v.server_name,
            root = v.forum_root.display(),
            cert = v.certificate,
            key = v.certificate_key,
            php = v.php_fpm,
            locations = indent(&nginx_locations(v)),
        );
    } else {
        let _ = write!(
            out,
            "# Inside your forum's server {{ }} block for {name} (the one with `listen 443 ssl`):\n{locations}\n",
            name = v.server_name,
            locations = nginx_locations(v)
        );
    }
    out.push_str(&nginx_dot_conf_change(v));
    out.push_str(
        "\n# Then turn on \"Reverse Proxy Support\" in the extension's settings, run\n\
         # `nginx -t && systemctl reload nginx`, and restart flarum-ws.\n",
    );
    out
}

/// Flarum 2: browsers open wss://HOST:6001 (`js-client-port`), and the
/// forum's PHP side posts to the same port. flarum/realtime's own
/// `.nginx.conf` only proxies `/apps` on the forum's server block, which
/// neither reaches; this is a server block on that port for both, in front
/// of flarum-ws on loopback.
fn nginx_realtime(v: &Values, ports: &RealtimePorts) -> String {
    let mut out = String::from(
        "# In the http { } context (for example /etc/nginx/conf.d/flarum-ws.conf), once:\n\
         map $http_upgrade $connection_upgrade {\n  default upgrade;\n  '' close;\n}\n\n",
    );
    let _ = write!(
        out,
        "# flarum/realtime (Flarum 2): browsers connect to wss://{name}:{public} and the\n\
         # forum's PHP side posts to the same port; nginx terminates TLS there and\n\
         # hands websockets (/app/) and the HTTP API (/apps/) to flarum-ws.\n\
         server {{\n\
         \x20 listen {public} ssl;\n\
         \x20 server_name {name};\n\
         \x20 ssl_certificate {cert};\n\
         \x20 ssl_certificate_key {key};\n\n\
         \x20 location / {{\n\
         \x20   proxy_pass             http://127.0.0.1:{upstream};\n\
         \x20   proxy_http_version     1.1;\n\
         \x20   proxy_set_header       Host $host;\n\
         \x20   proxy_set_header       Upgrade $http_upgrade;\n\
         \x20   proxy_set_header       Connection $connection_upgrade;\n\
         \x20   proxy_set_header       X-Real-IP $remote_addr;\n\
         \x20   proxy_set_header       X-Forwarded-For $proxy_add_x_forwarded_for;\n\
         \x20   proxy_set_header       X-Forwarded-Proto $scheme;\n\
         \x20   # Longer than the server's ping interval plus its pong timeout.\n\
         \x20   proxy_read_timeout     {timeout};\n\
         \x20   client_max_body_size   256k;\n\
         \x20 }}\n\
         }}\n",
        name = v.server_name,
        public = ports.public,
        upstream = ports.upstream,
        cert = v.certificate,
        key = v.certificate_key,
        timeout = v.read_timeout,
    );
    if ports.config_change {
        let _ = write!(
            out,
            "\n# flarum-ws must listen behind nginx: in config.php, add to (or create) the\n\
             # 'websocket' array, then restart flarum-ws:\n\
             #   'websocket' => [\n\
             #     'server-host' => '127.0.0.1',\n\
             #     'server-port' => {upstream},\n\
             #   ],\n\
             # (browsers and the forum keep using port {public}: js-client-port and\n\
             # php-client-port are not changed).\n",
            upstream = ports.upstream,
            public = ports.public,
        );
    }
    out.push_str("\n# Then `nginx -t && systemctl reload nginx`.\n");
    out
}

fn caddy(v: &Values) -> String {
    format!(
        "{name} {{\n\
         \x20 @websocket {{\n\
         \x20   header Connection *Upgrade*\n\
         \x20   header Upgrade websocket\n\
         \x20 }}\n\
         \x20 reverse_proxy @websocket 127.0.0.1:{port}\n\n\
         \x20 root * {root}/public\n\
         \x20 php_fastcgi {php}\n\
         \x20 file_server\n\
         }}\n",
        name = v.server_name,
        port = v.port,
        root = v.forum_root.display(),
        php = v.php_fpm.replace("unix:", "unix/"),
    )
}

fn apache(v: &Values) -> String {
    format!(
        "# Inside the <VirtualHost *:443> of {name}; needs mod_proxy, mod_proxy_wstunnel and mod_rewrite\n\
         # (a2enmod proxy proxy_wstunnel rewrite):\n\
         RewriteEngine On\n\
         RewriteCond %{{HTTP:Upgrade}} =websocket [NC]\n\
         RewriteRule ^/app/(.*) ws://127.0.0.1:{port}/app/$1 [P,L]\n\
         ProxyTimeout {timeout}\n",
        name = v.server_name,
        port = v.port,
        timeout = v.read_timeout,
    )
}

/// The text for `args`, from loaded settings.
fn render(loaded: &Loaded, args: &SnippetArgs) -> String {
    let v = values(loaded, args);
    match (args.format, &v.realtime) {
        (ProxyFormat::Nginx, Some(ports)) => nginx_realtime(&v, ports),
        (ProxyFormat::Caddy, Some(ports)) => format!(
            "# flarum/realtime (Flarum 2): Caddy terminates TLS on port {public} (js-client-port)\n\
             # and passes websockets and the HTTP API to flarum-ws on 127.0.0.1:{upstream}.\n\
             {name}:{public} {{\n\
             \x20 reverse_proxy 127.0.0.1:{upstream}\n\
             }}\n",
            name = v.server_name,
            public = ports.public,
            upstream = ports.upstream,
        ),
        (ProxyFormat::Apache, Some(_)) => {
            "# flarum-ws has no Apache configuration for Flarum 2 forums yet: use\n\
             # --format nginx or --format caddy, or let flarum-ws serve TLS itself\n\
             # (FLARUM_WS_TLS_CERT and FLARUM_WS_TLS_KEY).\n"
                .to_owned()
        }
        (ProxyFormat::Nginx, None) if args.beside_site || (v.sub_path.is_some() && !args.full) => {
            nginx_beside_site(&v)
        }
        (ProxyFormat::Nginx, None) => nginx(&v, args.full),
        (ProxyFormat::Caddy, None) => caddy(&v),
        (ProxyFormat::Apache, None) => apache(&v),
    }
}

pub fn run(args: SnippetArgs) -> Result<Exit, Failure> {
    if let Some(exit) = run_as_the_service("nginx-snippet", &args.sources) {
        return Ok(exit);
    }
    let loaded = runtime()?.block_on(load_as_the_service(&args.sources))?;
    print!("{}", render(&loaded, &args));
    Ok(Exit::Success)
}
