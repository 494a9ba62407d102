//! The one hook the Pusher handler calls for what a Flarum 2 forum
//! (flarum/realtime) adds to a socket: who it proved to be, and what its
//! client events mean beyond a Pusher relay. On a server without such a
//! forum every call leaves Pusher's behaviour as it is, so the handler reads
//! as a Pusher server and the daemon's differences read here.

use std::sync::Arc;

use serde_json::Value;

use super::index_typing;
use super::typing::{self, Typed, TypingIn};
use crate::protocol::SocketId;
use crate::server::context::ServerContext;

/// Tags one compose-typing signal may name (Flarum allows a handful).
const MAX_COMPOSE_TAGS: usize = 20;

/// The user id of a `private-user={id}` channel (flarum/realtime's).
fn forum_user_channel(channel: &str) -> Option<u64> {
    typing::channel_id(channel, "private-user=")
}

/// What the daemon does with a client event before Pusher's rules apply.
pub enum Screened {
    /// Dropped without a word.
    Dropped,
    /// Refused with this `pusher:error` message.
    Refused(&'static str),
}

/// One socket's Flarum 2 state (the socket's id comes with each call: this
/// lives in every connection's task, so it holds only what it must).
#[derive(Default)]
pub struct RealtimeSocket {
    /// The forum user this socket proved to be by subscribing to its
    /// `private-user={id}` channel (flarum/realtime's identity rule).
    user: Option<u64>,
}

impl RealtimeSocket {
    /// Whether this server serves a Flarum 2 forum, whose JS expects the
    /// flarum/realtime daemon's answers where they differ from Pusher's.
    pub fn serves_flarum2(ctx: &ServerContext) -> bool {
        ctx.realtime.load().is_some()
    }

    /// The socket joined `channel`: its own `private-user={id}` channel,
    /// which the forum signed, proves who it is.
    pub fn joined(&mut self, ctx: &ServerContext, socket: SocketId, channel: &str) {
        if let Some(user) = forum_user_channel(channel) {
            self.user = Some(user);
            ctx.socket_users.set(socket, Some(user));
        }
    }

    /// The socket left `channel`; leaving its user channel unproves it.
    pub fn left(&mut self, ctx: &ServerContext, socket: SocketId, channel: &str) {
        if forum_user_channel(channel).is_some_and(|user| Some(user) == self.user) {
            self.user = None;
            ctx.socket_users.set(socket, None);
        }
    }

    /// The socket closed.
    pub fn closed(&mut self, ctx: &ServerContext, socket: SocketId) {
        if self.user.take().is_some() {
            ctx.socket_users.set(socket, None);
        }
    }

    /// The daemon's answer to a client event on `channel` (which the socket
    /// `joined` or not), where it differs from Pusher's; `None`: Pusher's
    /// rules apply.
    pub fn screen(ctx: &ServerContext, channel: &str, joined: bool) -> Option<Screened> {
        if !Self::serves_flarum2(ctx) {
            return None;
        }
        if !joined {
            return Some(Screened::Dropped);
        }
        // The daemon rewrites typing into who types from the socket's own
        // identity; a raw relay here would let a vetted viewer show the
        // others any name typing.
        typing::is_identified_channel(channel).then_some(Screened::Refused(
            "Client events are not accepted on identified typing channels",
        ))
    }

    /// A client event that passed Pusher's rules. Typing signals are taken
    /// over (said again as the socket proved itself, to those entitled to
    /// know): `None`. Anything else comes back to be relayed as Pusher
    /// relays it, after starting the index typing a new discussion's
    /// composer signals.
    pub fn client_event(
        &self,
        ctx: &Arc<ServerContext>,
        socket: SocketId,
        channel: &str,
        event: &str,
        data: Value,
    ) -> Option<Value> {
        let Some(forum) = ctx.realtime.load_full() else {
            return Some(data);
        };
        if let Some(target) = TypingIn::of(event, channel) {
            let Ok(permit) = forum.typing_work.clone().try_acquire_owned() else {
                tracing::debug!("Typing work is at its bound; a typing signal is dropped");
                return None;
            };
            let typed = Typed {
                sender: socket,
                user: self.user,
                target,
                data,
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let time = typing::client_time(&typed.data);
                let (typist, target) = (typed.user, typed.target);
                typing::relay(ctx.clone(), forum.clone(), typed).await;
                if let TypingIn::Discussion(discussion) = target {
                    index_typing::discussion_typing(ctx, forum, typist, discussion, time).await;
                }
            });
            return None;
        }
        // Composing a new discussion: the tags it would go in, on the user's
        // own channel (the user from the channel's name, which the forum
        // signed, never from the payload).
        if event == "client-index-typing-tags"
            && let Some(user) = forum_user_channel(channel)
            // Throttled per user and bounded in flight before any work;
            // the event itself is still relayed.
            && forum.index.take_compose_signal(user)
            && let Ok(permit) = forum.typing_work.clone().try_acquire_owned()
        {
            let tags: Vec<u64> = data
                .get("tags")
                .and_then(Value::as_array)
                .map(|tags| {
                    tags.iter()
                        .filter_map(|t| t.as_u64().or_else(|| t.as_str()?.parse().ok()))
                        .take(MAX_COMPOSE_TAGS)
                        .collect()
                })
                .unwrap_or_default();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                index_typing::compose_typing(ctx, forum, user, tags).await;
            });
        }
        Some(data)
    }
}
