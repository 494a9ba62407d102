//! Which process listens on a port, and on which ports a process listens,
//! so that "address in use" can name the holder (`check` before starting,
//! `serve` when it cannot bind) and `check` can find a running flarum-ws
//! that still listens on a port the forum no longer names. Linux only:
//! found through /proc/net/tcp and the processes' descriptors; processes
//! of other users are invisible without root.

/// The listening sockets from /proc/net/tcp and tcp6: (inode, port).
fn listening_sockets() -> Vec<(String, u16)> {
    let mut sockets = Vec::new();
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
            let port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if let (Some(port), true) = (port, *state == "0A") {
                sockets.push(((*inode).to_owned(), port));
            }
        }
    }
    sockets
}

/// Every process this user can see: (pid, command name, socket inodes).
fn processes() -> Vec<(u32, String, Vec<String>)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
            let sockets = fds
                .flatten()
                .filter_map(|fd| {
                    let link = std::fs::read_link(fd.path()).ok()?;
                    let link = link.to_string_lossy();
                    Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect();
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            Some((pid, name.trim().to_owned(), sockets))
        })
        .collect()
}

/// The process listening on `port`: (pid, command name).
pub fn port_holder(port: u16) -> Option<(u32, String)> {
    let inodes: Vec<String> = listening_sockets()
        .into_iter()
        .filter(|(_, listening)| *listening == port)
        .map(|(inode, _)| inode)
        .collect();
    // A socket systemd holds for a service (socket activation) is held by
    // both: the service is the one to name.
    let mut holders: Vec<(u32, String)> = processes()
        .into_iter()
        .filter(|(_, _, sockets)| sockets.iter().any(|s| inodes.contains(s)))
        .map(|(pid, name, _)| (pid, name))
        .collect();
    holders.sort_by_key(|(pid, _)| *pid == 1);
    holders.into_iter().next()
}

/// The other processes named `name` and the ports each listens on.
pub fn listening_processes(name: &str) -> Vec<(u32, Vec<u16>)> {
    let listening = listening_sockets();
    let own = std::process::id();
    processes()
        .into_iter()
        .filter(|(pid, comm, _)| comm == name && *pid != own)
        .map(|(pid, _, sockets)| {
            let mut ports: Vec<u16> = listening
                .iter()
                .filter(|(inode, _)| sockets.contains(inode))
                .map(|(_, port)| *port)
                .collect();
            ports.sort_unstable();
            ports.dedup();
            (pid, ports)
        })
        .filter(|(_, ports)| !ports.is_empty())
        .collect()
}
