//! The listening socket handed over by systemd (socket activation,
//! `contrib/flarum-ws-listen.socket`): the socket belongs to systemd and outlives
//! the process, so during a restart or a package upgrade the forum's API
//! calls and the tabs reconnecting wait in its backlog instead of being
//! refused. The descriptors are validated by the `listenfd` crate
//! (`LISTEN_PID` must name this process, the descriptor must be a TCP
//! socket), which is what makes taking them over safe.

use std::io;
use std::net::SocketAddr;

/// The TCP socket systemd passed to this process, if any. An error means
/// systemd passed something that is not a TCP socket (a `ListenDatagram=`
/// or a unix path in the socket unit).
pub fn inherited_listener() -> io::Result<Option<std::net::TcpListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let listener = fds.take_tcp_listener(0)?;
    if let Some(listener) = &listener {
        listener.set_nonblocking(true)?;
    }
    Ok(listener)
}

/// What to tell the admin when the socket systemd passed does not listen
/// where the settings say browsers and the forum connect: they are told
/// the settings' address and find nothing (or another server) there.
pub fn mismatch(inherited: SocketAddr, host: &str, port: u16) -> Option<String> {
    let host_matches = host.parse::<std::net::IpAddr>().is_ok_and(|ip| {
        ip == inherited.ip() || ip.is_unspecified() && inherited.ip().is_unspecified()
    });
    if inherited.port() == port && host_matches {
        return None;
    }
    Some(format!(
        "the socket unit listens on {inherited}, but the settings say {host}:{port}: browsers and the forum connect to the settings' port; set ListenStream={host}:{port} with `systemctl edit flarum-ws-listen.socket`, then systemctl stop flarum-ws && systemctl restart flarum-ws-listen.socket && systemctl start flarum-ws"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_where_the_settings_say_is_no_mismatch() {
        assert_eq!(
            mismatch("127.0.0.1:2083".parse().unwrap(), "127.0.0.1", 2083),
            None
        );
        assert_eq!(
            mismatch("0.0.0.0:6001".parse().unwrap(), "0.0.0.0", 6001),
            None
        );
        let told = mismatch("127.0.0.1:2083".parse().unwrap(), "127.0.0.1", 6001).unwrap();
        assert!(told.contains("ListenStream=127.0.0.1:6001"), "{told}");
        assert!(mismatch("0.0.0.0:2083".parse().unwrap(), "127.0.0.1", 2083).is_some());
    }
}
