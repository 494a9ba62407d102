//! Handing the listening socket to a new `flarum-ws serve`, without
//! systemd. A second `serve` started on the same port while the first runs
//! (an upgrade by hand, a new configuration) asks the first for its
//! listening socket over a local socket and gets the socket itself (the
//! descriptor, `SCM_RIGHTS`), not a second one on the same port: one
//! backlog, so no connection waiting in it is dropped. Once the new process
//! accepts, it says so, and the first stops accepting and closes its
//! connections with 4200, which reconnect to the new one. Until the first
//! exits, the two pass each other what they publish over the same local
//! socket (`relay`), so its remaining tabs miss nothing.
//!
//! The local socket is in the abstract namespace
//! (`flarum-ws-handover-ADDRESS:PORT`, no file to clean up) and answers only a process of the same user (or
//! root), checked with the kernel's `SO_PEERCRED`: the listening socket is
//! the forum's, and nobody else may take it.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg, sockopt,
};
use std::sync::Arc;

use super::ServerContext;

/// How long the first process waits for the new one to say it accepts.
const ACCEPTING_WAIT: Duration = Duration::from_secs(30);

/// The byte the new process sends once it accepts on the socket.
const ACCEPTING: u8 = b'A';

/// The local address processes serving `listening` meet at.
fn meeting_point(listening: std::net::SocketAddr) -> std::io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("flarum-ws-handover-{listening}"))
}

/// The first process's side: offers `listener` to the next `serve` on its
/// address until shutdown, and stops the server once one has taken it and
/// accepts (this process then closes its connections over `close_spread`).
/// Runs on a thread of its own.
pub fn offer(listener: &tokio::net::TcpListener, ctx: Arc<ServerContext>) {
    let shutdown = ctx.shutdown.clone();
    let (Ok(socket), Ok(listening)) =
        (listener.as_fd().try_clone_to_owned(), listener.local_addr())
    else {
        return;
    };
    ctx.offered.hold(socket);
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        // The process this one took the socket from still holds the
        // meeting point until it exits: retried until then.
        let meeting = loop {
            match meeting_point(listening).and_then(|address| UnixListener::bind_addr(&address)) {
                Ok(meeting) => break meeting,
                Err(error) if shutdown.is_cancelled() => {
                    tracing::debug!("not offering the listening socket to a next serve: {error}");
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        };
        for stream in meeting.incoming() {
            if shutdown.is_cancelled() {
                return;
            }
            let Ok(stream) = stream else { continue };
            // A copy for this attempt: the server drops its own at shutdown.
            let Some(socket) = ctx.offered.copy() else {
                return;
            };
            match hand_over(&stream, &socket) {
                Ok(()) => {
                    tracing::info!(
                        "A new flarum-ws serve took over the listening socket and accepts: closing this process's connections with 4200 so that they reconnect to it"
                    );
                    // Before this one stops accepting: what it still
                    // publishes is passed on too.
                    let _entered = runtime.enter();
                    super::relay::start(stream, ctx.clone(), super::relay::Side::Old);
                    ctx.hand_over();
                    return;
                }
                Err(problem) => tracing::warn!("did not hand the listening socket over: {problem}"),
            }
        }
    });
}

/// The listening socket as offered: a copy of the server's, held until the
/// server stops accepting, so that a stopping server's socket closes (and
/// new connections are refused, not left waiting for nobody) as before.
#[derive(Default)]
pub struct Offered(std::sync::Mutex<Option<OwnedFd>>);

impl Offered {
    fn hold(&self, socket: OwnedFd) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(socket);
    }

    fn copy(&self) -> Option<OwnedFd> {
        let held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.as_ref()?.try_clone().ok()
    }

    /// No more offers: the copy is closed.
    pub fn withdraw(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Sends `socket` to the process at the other end of `stream`, if it is
/// this user's (or root's), and waits for it to accept on it.
fn hand_over(stream: &UnixStream, socket: &OwnedFd) -> Result<(), String> {
    let peer = sockopt::socket_peercred(stream).map_err(|e| format!("peer unknown: {e}"))?;
    let ours = nix::unistd::Uid::effective().as_raw();
    let theirs = peer.uid.as_raw();
    if theirs != ours && theirs != 0 {
        return Err(format!(
            "a process of uid {theirs} asked for it; only uid {ours} or root may"
        ));
    }
    let fds = [socket.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg(
        stream,
        &[IoSlice::new(b"L")],
        &mut control,
        SendFlags::empty(),
    )
    .map_err(|e| format!("cannot send it: {e}"))?;
    let mut stream = stream;
    stream
        .set_read_timeout(Some(ACCEPTING_WAIT))
        .map_err(|e| e.to_string())?;
    let mut answer = [0u8; 1];
    match stream.read(&mut answer) {
        Ok(1) if answer[0] == ACCEPTING => Ok(()),
        Ok(_) => Err("the new process went away before accepting".into()),
        Err(error) => Err(format!(
            "the new process did not say it accepts within {} s: {error}",
            ACCEPTING_WAIT.as_secs()
        )),
    }
}

/// The line to the process the listening socket was taken from.
pub struct Taken {
    stream: UnixStream,
}

impl Taken {
    /// Tells the first process that this one accepts: it stops accepting
    /// and closes its connections. From then on the two relay what they
    /// publish to each other over this line until the first exits
    /// (`relay`).
    pub fn accepting(mut self, ctx: Arc<ServerContext>) {
        if let Err(error) = self.stream.write_all(&[ACCEPTING]) {
            tracing::warn!("could not tell the previous flarum-ws that this one accepts: {error}");
            return;
        }
        super::relay::start(self.stream, ctx, super::relay::Side::New);
    }
}

/// Asks the process listening on `listening` for its socket: `None` when
/// none offers it (no flarum-ws there, or one that does not hand over).
pub fn take_over(listening: std::net::SocketAddr) -> Option<(TcpListener, Taken)> {
    let address = meeting_point(listening).ok()?;
    let stream = UnixStream::connect_addr(&address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .ok()?;
    let socket: OwnedFd = control.drain().find_map(|message| match message {
        RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
        _ => None,
    })?;
    let listener = TcpListener::from(socket);
    listener.local_addr().ok()?; // a TCP socket, not anything else
    listener.set_nonblocking(true).ok()?;
    Some((listener, Taken { stream }))
}
