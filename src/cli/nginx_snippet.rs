//! `flarum-ws nginx-snippet`: the reverse-proxy configuration of the setup
//! guide's option 1, filled in with this forum's port and paths, for nginx
//! (default), Caddy or Apache.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::load::{Loaded, load, runtime};
use super::{Exit, Failure, ProxyFormat, SnippetArgs};

/// What the templates are filled with.
struct Values {
    server_name: String,
    port: u16,
    /// Seconds nginx may wait for a frame: longer than a full ping round.
    read_timeout: u64,
    forum_root: PathBuf,
    certificate: String,
    certificate_key: String,
    listen: String,
    php_fpm: String,
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
        port: settings.port,
        read_timeout: settings.activity_timeout.as_secs() + settings.pong_timeout.as_secs() + 60,
        server_name,
        forum_root,
        certificate,
        certificate_key,
        listen: args.listen.clone(),
        php_fpm: args.php_fpm.clone(),
    }
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
    match args.format {
        ProxyFormat::Nginx => nginx(&v, args.full),
        ProxyFormat::Caddy => caddy(&v),
        ProxyFormat::Apache => apache(&v),
    }
}

pub fn run(args: SnippetArgs) -> Result<Exit, Failure> {
    let loaded = runtime()?.block_on(load(&args.sources))?;
    print!("{}", render(&loaded, &args));
    Ok(Exit::Success)
}
