//! Which process listens on a port, so that "address in use" can name it
//! (`check` before starting, `serve` when it cannot bind). Linux only: the
//! holder is found through /proc/net/tcp and the processes' descriptors;
//! processes of other users are invisible without root.

/// The listening socket inodes for `port` from /proc/net/tcp and tcp6.
fn listening_inodes(port: u16) -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A is LISTEN.
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && listening_port == Some(port) {
                inodes.push((*inode).to_owned());
            }
        }
    }
    inodes
}

/// The process holding a socket with one of `inodes`: (pid, command name).
fn holder_of(inodes: &[String]) -> Option<(u32, String)> {
    let targets: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && targets.iter().any(|t| link.to_string_lossy() == *t)
            {
                let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some((pid, name.trim().to_owned()));
            }
        }
    }
    None
}

/// The process listening on `port`: (pid, command name).
pub fn port_holder(port: u16) -> Option<(u32, String)> {
    holder_of(&listening_inodes(port))
}
