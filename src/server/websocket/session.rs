//! One websocket connection from `connection_established` to close.
//!
//! A single task per connection, holding a [`Session`], selects over: a
//! close request (app termination, slow consumer), server shutdown, frames
//! queued by the hub, frames from the client, and the inactivity timer; each
//! of the last three has a method of its own. Writes are batched: when
//! several frames wait, they are framed into one [`Outbox`] and written with
//! one flush. A client that stops reading is noticed during the write too:
//! shutdown and termination still reach it, and a write that makes no
//! progress for `pong_timeout` drops it (recorded as 4100).
//!
//! On plain connections most frames never reach the session: the hub's
//! writers put them on the socket (`hub::writer`, `wire`). The session writes
//! what they could not (the client was slow to read), finishes a frame they
//! cut in two, and always owns reading, pings and the close handshake.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::handler::Handler;
use super::outbox::{Outbox, WriteError};
use super::pace::Paced;
use super::wire::Wire;
use crate::hub::{Frame, Inbox, SocketLink, Wake};
use crate::protocol::messages::outgoing;
use crate::protocol::{SocketId, close_code};
use crate::server::context::ServerContext;
use crate::telemetry::feed::{FeedItem, FeedKind};
use crate::throttle::Throttle;

/// A client's websocket, its reading paced (`pace.rs`).
pub type Socket = WebSocketStream<Paced<TokioIo<Upgraded>>>;

/// Upper bound on frames written before one flush.
pub(crate) const MAX_BATCH: usize = 64;

/// A batch stops growing once its payloads reach this many bytes (it always
/// takes one frame): what a client that stops reading mid-batch leaves in
/// the wire's tail is bounded by it.
pub(crate) const MAX_BATCH_BYTES: u64 = 64 * 1024;

/// Bound on saying goodbye to a client that may not be reading any more.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends `pusher:error` with `code`, then closes with the same code.
pub async fn reject(mut socket: Socket, code: u16, message: &str) {
    tracing::debug!("refusing websocket connection: {code} {message}");
    close_with(&mut socket, &mut Outbox::default(), code, message, true).await;
}

/// Finishes what the outbox still holds (a write cut short by this very
/// close), then says goodbye; all of it bounded by [`CLOSE_TIMEOUT`].
async fn close_with(
    socket: &mut Socket,
    outbox: &mut Outbox,
    code: u16,
    message: &str,
    announce: bool,
) {
    let goodbye = async {
        if !outbox.is_empty()
            && outbox
                .write_to(socket.get_mut(), CLOSE_TIMEOUT)
                .await
                .is_err()
        {
            return Ok(());
        }
        if announce {
            socket
                .feed(Message::text(outgoing::error(Some(code), message)))
                .await?;
        }
        let reason: String = message.chars().take(100).collect();
        socket
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            })))
            .await?;
        // Wait briefly for the client's close reply so the close is clean.
        while let Some(Ok(_)) = socket.next().await {}
        Ok::<(), WsError>(())
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, goodbye).await;
}

/// What one frame from the client asks of the session.
enum Read {
    Handled,
    Ended(Ending),
    /// A ping, whose pong tungstenite queued.
    Pinged,
}

/// Close code recorded when a client vanished without a close frame.
const ABNORMAL_CLOSURE: u16 = 1006;

/// Close code recorded when the client's close frame carried none.
const NO_STATUS_RECEIVED: u16 = 1005;

/// Why the session is ending.
enum Ending {
    /// The client closed (with the code of its close frame) or vanished;
    /// nothing more to send.
    ClientGone(Option<u16>),
    /// The server closes with this code and message.
    Close {
        code: u16,
        message: String,
        announce: bool,
    },
    /// The server drops the connection without a close handshake (the
    /// client reads nothing any more); `code` is what is recorded.
    Abandon(u16),
}

impl Ending {
    /// The server closes with `code` and its standard reason.
    fn server(code: u16, announce: bool) -> Self {
        Self::Close {
            code,
            message: close_reason(code).into(),
            announce,
        }
    }
}

fn close_reason(code: u16) -> &'static str {
    match code {
        close_code::OVER_CAPACITY => "Client is not reading fast enough; reconnect later",
        close_code::UNAUTHORIZED => "Connection terminated by the application",
        close_code::RECONNECT_NOW => "Server is shutting down; reconnect",
        close_code::PONG_NOT_RECEIVED => "Pong reply not received in time",
        _ => "Connection closed by the server",
    }
}

/// Runs the session of an admitted client until it ends. `wire` is the
/// plain connection's shared write side (none for TLS): the hub's writers
/// then put frames on it while the session is not writing. Not in verbose
/// mode, which logs every frame the session sends.
///
/// Not an `async fn`: the session is opened before the future is made, so
/// that the future holds the socket once, in the session (an `async fn`
/// keeps its arguments beside its locals: a second socket's worth of bytes
/// in every connection's task).
pub fn run(
    ctx: Arc<ServerContext>,
    socket: Socket,
    wire: Option<Arc<Wire>>,
    address: IpAddr,
) -> impl Future<Output = ()> {
    let (mut session, mut queue) = Session::open(ctx, socket, wire, address);
    async move {
        let ending = session.serve(&mut queue).await;
        // From here on nothing more is queued or written by the writers, so
        // no frame follows the close frame.
        drop(queue);
        session.end(ending).await;
        // Dropping the session counts the connection closed (`ClosedAs`).
    }
}

/// What one connection's task holds between events. [`Session::serve`]
/// waits on every source at once; each has its method, which says whether
/// the session ends: [`Session::take_batch`] and [`Session::written`] for
/// the hub's frames, [`Session::read`] for the client's, and
/// [`Session::on_timer`] for the activity timer.
struct Session {
    ctx: Arc<ServerContext>,
    id: SocketId,
    socket: Socket,
    link: Arc<SocketLink>,
    handler: Handler,
    /// Frames framed for one write, and what a write cut short left.
    outbox: Outbox,
    verbose: bool,
    activity_timeout: Duration,
    /// Also the longest a write may make no progress.
    pong_timeout: Duration,
    /// Incoming frames only move this mark; the timer checks it when it fires.
    last_activity: Instant,
    ping_sent_at: Option<Instant>,
    closed_as: ClosedAs,
}

impl Session {
    /// Links a new socket into the hub and counts it opened.
    fn open(
        ctx: Arc<ServerContext>,
        socket: Socket,
        wire: Option<Arc<Wire>>,
        address: IpAddr,
    ) -> (Self, Inbox) {
        let id = SocketId::random();
        let verbose = ctx.settings().verbose;
        let capacity = ctx.settings().limits.socket_queue_capacity;
        let ledger = ctx.hub.budget().ledger(address);
        let (link, queue) = match wire.filter(|_| !verbose) {
            Some(wire) => SocketLink::wired(id, capacity, wire, ctx.writers.assign(), Some(ledger)),
            None => SocketLink::charged(id, capacity, ledger),
        };
        let link = Arc::new(link);
        if verbose {
            tracing::info!("New connection opened with id {id}");
        }
        ctx.telemetry.connection_opened();
        ctx.telemetry
            .record(FeedItem::new(FeedKind::Connected).socket(id));
        let session = Self {
            handler: Handler::new(ctx.clone(), link.clone(), address),
            activity_timeout: ctx.settings().activity_timeout,
            pong_timeout: ctx.settings().pong_timeout,
            closed_as: ClosedAs {
                ctx: ctx.clone(),
                id,
                code: ABNORMAL_CLOSURE,
            },
            ctx,
            id,
            socket,
            link,
            outbox: Outbox::default(),
            verbose,
            last_activity: Instant::now(),
            ping_sent_at: None,
        };
        (session, queue)
    }

    /// Says `connection_established`, then serves the client until
    /// something ends the session: a close request (app termination, slow
    /// consumer), shutdown, the client, or its silence.
    async fn serve(&mut self, queue: &mut Inbox) -> Ending {
        let established =
            outgoing::connection_established(&self.id.to_string(), self.activity_timeout.as_secs());
        let established_bytes = established.len() as u64;
        if self.socket.send(Message::text(established)).await.is_err() {
            return Ending::ClientGone(None);
        }
        self.ctx.writers.sent().add(1, established_bytes);
        // Long-lived futures, created once: re-creating them on every wake
        // would register and unregister waiters (and a timer) per frame.
        let link = self.link.clone();
        let closed = link.close_requested();
        tokio::pin!(closed);
        let shutdown = self.ctx.closing.token_for(self.link.id);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let timer = sleep_until(Instant::now() + self.activity_timeout);
        tokio::pin!(timer);
        self.last_activity = Instant::now();
        loop {
            let step = tokio::select! {
                biased;
                code = &mut closed => Some(self.closing(code, true)),
                _ = &mut cancelled => Some(Ending::server(close_code::RECONNECT_NOW, true)),
                Some(wake) = queue.recv() => {
                    let batch = self.take_batch(wake, queue);
                    // The client may stop reading mid-write: a close request
                    // or shutdown still ends the session, skipping the
                    // announcement; the rest of the batch and the close frame
                    // get CLOSE_TIMEOUT to go out. The selects are here, not
                    // in async methods, which would widen every connection's
                    // task by their own state; the futures held only while
                    // writing are boxed for the same reason.
                    tokio::select! {
                        biased;
                        code = &mut closed => Some(self.closing(code, false)),
                        _ = &mut cancelled => Some(Ending::server(close_code::RECONNECT_NOW, false)),
                        written = Box::pin(self.outbox.write_to(self.socket.get_mut(), self.pong_timeout)) => {
                            self.written(written, batch, queue)
                        }
                    }
                }
                incoming = self.socket.next() => match self.read(incoming, timer.as_mut()) {
                    Read::Handled => None,
                    Read::Ended(ending) => Some(ending),
                    // tungstenite queued the pong; send it now rather than
                    // with the next frame. A client that pings but stopped
                    // reading is dropped like any other, and shutdown still
                    // reaches it.
                    Read::Pinged => tokio::select! {
                        biased;
                        _ = &mut cancelled => Some(Ending::Abandon(close_code::RECONNECT_NOW)),
                        flushed = Box::pin(tokio::time::timeout(self.pong_timeout, self.socket.flush())) => {
                            pong_flushed(flushed)
                        }
                    },
                },
                () = &mut timer => self.on_timer(timer.as_mut()),
            };
            if let Some(ending) = step {
                return ending;
            }
        }
    }

    /// How to end when a close with `code` was asked for: with the
    /// protocol's goodbye, or by dropping a client that is not reading.
    fn closing(&self, code: u16, announce: bool) -> Ending {
        if self.link.drop_requested() {
            Ending::Abandon(code)
        } else {
            Ending::server(code, announce)
        }
    }

    /// Puts what the hub queued into the outbox, with whatever else
    /// already waits, as one batch: how many messages and bytes it holds.
    fn take_batch(&mut self, wake: Wake, queue: &mut Inbox) -> (u64, u64) {
        match wake {
            Wake::Frame(frame) => fill_batch(&mut self.outbox, frame, queue, self.id, self.verbose),
            // A direct write left the rest of a frame in the wire; writing
            // an empty outbox flushes it.
            Wake::Flush => (0, 0),
        }
    }

    /// A batch's write ended: counted, or the end of a client that stopped
    /// reading or vanished.
    fn written(
        &mut self,
        written: Result<(), WriteError>,
        (messages, bytes): (u64, u64),
        queue: &mut Inbox,
    ) -> Option<Ending> {
        let id = self.id;
        match written {
            Ok(()) => {
                queue.written();
                self.ctx.writers.sent().add(messages, bytes);
                None
            }
            Err(WriteError::Stalled(waited)) => {
                tracing::debug!(
                    "Connection id {id} read nothing for {waited:?} (pong_timeout); dropping it"
                );
                Some(Ending::Abandon(close_code::OVER_CAPACITY))
            }
            Err(WriteError::Io(error)) => {
                tracing::debug!("Connection id {id} write failed: {error}");
                Some(Ending::ClientGone(None))
            }
        }
    }

    /// Takes one frame from the client. Any frame answers a pending ping.
    /// A ping's pong is flushed by the caller.
    fn read(&mut self, incoming: Option<Result<Message, WsError>>, timer: Pin<&mut Sleep>) -> Read {
        self.last_activity = Instant::now();
        // The ping is answered: the next one is due activity_timeout from
        // now, not when the answer was due.
        if self.ping_sent_at.take().is_some() {
            timer.reset(self.last_activity + self.activity_timeout);
        }
        match incoming {
            None => Read::Ended(Ending::ClientGone(None)),
            Some(Err(error)) => Read::Ended(read_error(self.id, error)),
            Some(Ok(Message::Close(frame))) => {
                // tungstenite answers the close; the next read ends the stream.
                let code = frame.map_or(NO_STATUS_RECEIVED, |f| u16::from(f.code));
                Read::Ended(Ending::ClientGone(Some(code)))
            }
            Some(Ok(Message::Ping(_))) => Read::Pinged,
            Some(Ok(message)) => {
                handle_message(&mut self.handler, message);
                Read::Handled
            }
        }
    }

    /// The activity timer fired: ping a silent client, or end the session
    /// of one that did not answer the last ping.
    fn on_timer(&mut self, timer: Pin<&mut Sleep>) -> Option<Ending> {
        let now = Instant::now();
        match self.ping_sent_at {
            // No frame since the ping (one would have cleared it).
            Some(_) => Some(Ending::server(close_code::PONG_NOT_RECEIVED, true)),
            None if self.last_activity + self.activity_timeout > now => {
                timer.reset(self.last_activity + self.activity_timeout);
                None
            }
            None => {
                self.ping_sent_at = Some(now);
                timer.reset(now + self.pong_timeout);
                self.link.send(Frame::from(outgoing::ping()));
                None
            }
        }
    }

    /// Closes the way `ending` says, leaves every channel and records the
    /// close code. By reference: a session moved into this future would be
    /// held twice by the connection's task, once in each future's state.
    async fn end(&mut self, ending: Ending) {
        let id = self.id;
        let close_code = match &ending {
            Ending::Close {
                code,
                message,
                announce,
            } => {
                tracing::debug!("Connection id {id} closed by the server with {code}: {message}");
                Box::pin(close_with(
                    &mut self.socket,
                    &mut self.outbox,
                    *code,
                    message,
                    *announce,
                ))
                .await;
                *code
            }
            Ending::Abandon(code) => *code,
            Ending::ClientGone(Some(code)) => {
                // Let tungstenite send its close reply before the socket drops.
                let _ = Box::pin(tokio::time::timeout(CLOSE_TIMEOUT, self.socket.next())).await;
                *code
            }
            Ending::ClientGone(None) => ABNORMAL_CLOSURE,
        };
        self.handler.finish();
        self.closed_as.code = close_code;
        if self.verbose {
            tracing::info!("Connection id {id} closed");
        }
    }
}

/// Counts the connection closed, with its close code, however the session
/// ends: normally, or by a panic (a bug) that unwinds it, which must not
/// leave a stuck connection count. The handler leaves its channels the same
/// way (its `Drop`).
struct ClosedAs {
    ctx: Arc<ServerContext>,
    id: SocketId,
    /// 1006 until the session knows better.
    code: u16,
}

impl Drop for ClosedAs {
    fn drop(&mut self) {
        let code = self.code;
        self.ctx.telemetry.connection_closed(
            code,
            FeedItem::new(FeedKind::Disconnected)
                .socket(self.id)
                .detail(format!("close code {code}")),
        );
    }
}

/// Oversized messages, logged at most once a minute (anyone can send them).
static OVERSIZED_MESSAGES: Throttle = Throttle::new(Duration::from_secs(60));

fn read_error(id: SocketId, error: WsError) -> Ending {
    match error {
        WsError::Capacity(problem) => {
            if let Some(held_back) = OVERSIZED_MESSAGES.ready() {
                tracing::warn!(
                    "Connection id {id} sent a message over the size limit: {problem} ({held_back} more such messages since the last such line)"
                );
            }
            Ending::Close {
                code: u16::from(CloseCode::Size),
                message: format!("Message too large: {problem}"),
                announce: true,
            }
        }
        WsError::Utf8(problem) => {
            tracing::debug!("Connection id {id} sent a text frame that is not UTF-8: {problem}");
            Ending::Close {
                code: u16::from(CloseCode::Invalid),
                message: "Text frames must be UTF-8".into(),
                announce: false,
            }
        }
        // Gone without a close frame: the connection dropped, not a
        // protocol fault of the client's.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            tracing::debug!("Connection id {id} vanished without a close frame");
            Ending::ClientGone(None)
        }
        WsError::Protocol(problem) => {
            tracing::debug!("Connection id {id} broke the websocket protocol: {problem}");
            Ending::Close {
                code: u16::from(CloseCode::Protocol),
                message: format!("Websocket protocol error: {problem}"),
                announce: false,
            }
        }
        other => {
            tracing::debug!("Connection id {id} read failed: {other}");
            Ending::ClientGone(None)
        }
    }
}

fn handle_message(handler: &mut Handler, message: Message) {
    match message {
        Message::Text(text) => handler.handle_text(text.as_str()),
        Message::Binary(_) => handler.reply(outgoing::error(
            None,
            "Binary frames are not supported; send JSON text frames",
        )),
        // Pings are answered by the session; nothing else to do.
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Close(_) => {}
    }
}

/// How flushing a pong ended.
fn pong_flushed(
    flushed: Result<Result<(), WsError>, tokio::time::error::Elapsed>,
) -> Option<Ending> {
    match flushed {
        Ok(Ok(())) => None,
        Ok(Err(_)) => Some(Ending::ClientGone(None)),
        Err(_) => Some(Ending::Abandon(close_code::OVER_CAPACITY)),
    }
}

/// Puts `first` and whatever else is already queued (up to [`MAX_BATCH`]
/// frames and [`MAX_BATCH_BYTES`]) into the outbox. Returns how many
/// messages and payload bytes it holds.
fn fill_batch(
    outbox: &mut Outbox,
    first: Frame,
    queue: &mut Inbox,
    id: SocketId,
    verbose: bool,
) -> (u64, u64) {
    let mut messages = 0;
    let mut bytes = 0;
    let mut next = Some(first);
    while let Some(frame) = next.take() {
        if verbose {
            tracing::info!("Connection id {id} sending message {}", frame.as_str());
        }
        messages += 1;
        bytes += frame.len() as u64;
        outbox.push_text(frame);
        if messages < MAX_BATCH as u64 && bytes < MAX_BATCH_BYTES {
            next = queue.try_recv();
        }
    }
    (messages, bytes)
}
