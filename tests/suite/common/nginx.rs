//! nginx for the reverse-proxy tests: a configuration file around a
//! printed server block, with every path in a scratch directory, and an
//! nginx process on it.

use std::path::Path;
use std::process::{Command, Stdio};

/// An nginx.conf around `server_config` with every path in `dir`.
pub fn nginx_conf(dir: &Path, server_config: &str) -> std::path::PathBuf {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("snippets")).unwrap();
    // Stands in for Debian's /etc/nginx/snippets/fastcgi-php.conf.
    std::fs::write(
        dir.join("snippets/fastcgi-php.conf"),
        "fastcgi_index index.php;\n",
    )
    .unwrap();
    std::fs::write(dir.join("site.conf"), server_config).unwrap();
    let conf = format!(
        "daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  \
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// An nginx on `conf`, stopped with SIGTERM when dropped (so its workers
/// stop too).
pub struct Nginx(std::process::Child);

impl Nginx {
    pub fn start(conf: &Path, port: u16) -> Self {
        let child = Command::new("nginx")
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed");
        super::process::wait_until_listening(&[port], "nginx");
        Self(child)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.0.wait();
    }
}

/// The `location @ws` block of the Kyrne extension's README, word for word
/// but for the port (its `proxy_read_timeout 60` is the point), with the
/// `map` and `location /` lines that route websockets to it.
pub fn kyrne_readme_server(listen: u16, flarum_ws_port: u16) -> String {
    format!(
        "map $http_upgrade $type {{\n  default \"web\";\n  websocket \"ws\";\n}}\n\
         server {{\n  listen 127.0.0.1:{listen};\n  server_name localhost;\n\
         \tlocation / {{\n\t\ttry_files /nonexistent @$type;\n\t}}\n\
         \tlocation @web {{\n\t\treturn 404;\n\t}}\n\
         \tlocation @ws {{\n\
         \t    proxy_pass             http://127.0.0.1:{flarum_ws_port};\n\
         \t    proxy_set_header Host  $host;\n\
         \t    proxy_read_timeout     60;\n\
         \t    proxy_connect_timeout  60;\n\
         \t    proxy_redirect         off;\n\n\
         \t    # Allow the use of websockets\n\
         \t    proxy_http_version 1.1;\n\
         \t    proxy_set_header Upgrade $http_upgrade;\n\
         \t    proxy_set_header Connection 'upgrade';\n\
         \t    proxy_set_header Host $host;\n\
         \t    proxy_cache_bypass $http_upgrade;\n\
         \t}}\n}}\n"
    )
}
