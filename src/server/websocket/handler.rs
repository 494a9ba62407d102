//! What a connection's client messages do: ping, subscribe, unsubscribe,
//! signin and client events. Every refusal is answered with the protocol's
//! error and leaves the connection open.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::Value;

use crate::hub::{Frame, SocketLink};
use crate::protocol::messages::{
    ClientMessage, MessageError, SubscribeRequest, outgoing, parse_client_message,
    parse_presence_member, parse_signin_user,
};
use crate::protocol::signature::{channel_string_to_sign, signin_string_to_sign, verify_auth};
use crate::protocol::{ChannelKind, ChannelName, close_code};
use crate::server::context::ServerContext;
use crate::server::rate::{RateWindow, TokenBucket};
use crate::server::realtime::{RealtimeSocket, Screened};
use crate::telemetry::feed::{FeedItem, FeedKind};

/// Longest message text quoted back in logs.
const LOG_QUOTE_CHARS: usize = 1000;

/// Subscriptions per second one connection may make once it has made
/// `max_subscriptions_per_connection` at once. A tab subscribes to all its
/// channels when it (re)connects, as many as the forum's JS asks for (on
/// Flarum 2, one per tag for the tag list's typing dots), so the burst is
/// the per-connection maximum itself: no tab the forum makes is refused.
/// Each new channel is a channel change that webhooks and the other nodes
/// hear about; a client cycling channel names must not turn into a flood
/// of those.
pub(crate) const SUBSCRIBES_PER_SECOND: u32 = 10;

/// New channels one client address may bring into being at once, and then
/// per second. Joining a channel that exists costs nothing here; a client
/// that reconnects to get fresh per-connection buckets, and subscribes to
/// new names each time, is held by this (each new channel is an occupied
/// and a vacated webhook, and a count on the other nodes).
/// An address gets that allowance once for each [`CONNECTIONS_PER_ALLOWANCE`]
/// websockets it holds: an office, a school or a carrier's NAT whose tabs
/// all reconnect after a restart (when every channel is new again) brings
/// its users' channels back at once, while a client cycling names through a
/// few connections keeps one allowance.
pub(crate) const CHANNEL_CREATION_BURST: u32 = 1_000;
pub(crate) const CHANNEL_CREATIONS_PER_SECOND: u32 = 50;
pub(crate) const CONNECTIONS_PER_ALLOWANCE: usize = 50;
/// Client addresses whose channel creations are remembered at once.
pub(crate) const CHANNEL_CREATION_ADDRESSES: usize = 65_536;

/// One connection's protocol state.
pub struct Handler {
    ctx: Arc<ServerContext>,
    link: Arc<SocketLink>,
    /// The channels this socket joined, so closing can leave them all.
    channels: HashSet<ChannelName>,
    /// The user this socket signed in as.
    user_id: Option<String>,
    /// What a Flarum 2 forum adds to the socket (its proven user, typing).
    realtime: RealtimeSocket,
    /// Start of the current one-second client event window and its count.
    client_events: RateWindow,
    /// Subscriptions left to make at once.
    subscribes: TokenBucket,
    /// The client's address, for what is budgeted per address.
    address: IpAddr,
    /// Set once the socket left everything ([`Handler::finish`]).
    finished: bool,
}

/// Subscriptions a connection may make at once.
fn subscribe_burst(ctx: &ServerContext) -> u32 {
    let max = ctx.settings().limits.max_subscriptions_per_connection;
    u32::try_from(max).unwrap_or(u32::MAX)
}

impl Handler {
    pub fn new(ctx: Arc<ServerContext>, link: Arc<SocketLink>, address: IpAddr) -> Self {
        let burst = subscribe_burst(&ctx);
        Self {
            ctx,
            link,
            channels: HashSet::new(),
            user_id: None,
            realtime: RealtimeSocket::default(),
            client_events: RateWindow::default(),
            subscribes: TokenBucket::full(burst),
            address,
            finished: false,
        }
    }

    /// Queues a frame for this socket, behind anything already queued.
    pub fn reply(&self, frame: String) {
        self.link.send(Frame::from(frame));
    }

    /// Whether this server serves a Flarum 2 forum, whose JS expects the
    /// flarum/realtime daemon's answers where they differ from Pusher's.
    fn serves_flarum2(&self) -> bool {
        RealtimeSocket::serves_flarum2(&self.ctx)
    }

    fn error(&self, code: Option<u16>, message: &str) {
        tracing::debug!("Connection id {} error {code:?}: {message}", self.link.id);
        self.reply(outgoing::error(code, message));
    }

    pub fn handle_text(&mut self, text: &str) {
        self.ctx.telemetry.message_received(text.len());
        if self.ctx.settings().verbose {
            let quoted: String = text.chars().take(LOG_QUOTE_CHARS).collect();
            tracing::info!("Connection id {} received message {quoted}", self.link.id);
        }
        match parse_client_message(text) {
            // flarum/realtime's daemon ignores a frame that is not JSON and
            // an event it does not know; its JS expects no answer.
            Err(MessageError::InvalidJson(_)) if self.serves_flarum2() => {}
            Err(problem) => self.error(None, &problem.to_string()),
            Ok(ClientMessage::Ping) => self.reply(outgoing::pong()),
            Ok(ClientMessage::Pong) => {}
            Ok(ClientMessage::Subscribe(request)) => self.subscribe(request),
            Ok(ClientMessage::Unsubscribe { channel }) => self.unsubscribe(&channel),
            Ok(ClientMessage::Signin { auth, user_data }) => self.signin(&auth, &user_data),
            Ok(ClientMessage::ClientEvent {
                event,
                channel,
                data,
            }) => self.client_event(&event, &channel, data),
            Ok(ClientMessage::Unknown { .. }) if self.serves_flarum2() => {}
            Ok(ClientMessage::Unknown { event }) => {
                self.error(None, &format!("Unknown event {event:?}"));
            }
        }
    }

    /// Refuses a subscription: `pusher:subscription_error` on the channel and
    /// `pusher:error` for clients that only listen to the connection.
    fn refuse_subscription(&self, channel: &str, kind: &str, status: u16, message: &str) {
        tracing::debug!(
            "Connection id {} subscription to {channel} refused: {message}",
            self.link.id
        );
        self.reply(outgoing::subscription_error(channel, kind, message, status));
        self.reply(outgoing::error(
            None,
            &format!("Subscription to {channel} refused: {message}"),
        ));
    }

    fn subscribe(&mut self, request: SubscribeRequest) {
        let settings = self.ctx.settings();
        let limits = &settings.limits;
        let channel = match ChannelName::parse(&request.channel, limits.max_channel_name_length) {
            Ok(channel) => channel,
            Err(problem) => {
                let shown: String = request.channel.chars().take(210).collect();
                return self.refuse_subscription(
                    &shown,
                    "InvalidChannel",
                    400,
                    &problem.to_string(),
                );
            }
        };
        if self.channels.contains(&channel) {
            // Already subscribed: answered again, as Pusher and the daemon
            // do (a client waiting for the answer would hang), without
            // joining twice. A presence channel's answer carries its whole
            // member list, so those answers take subscription tokens.
            let burst = subscribe_burst(&self.ctx);
            if channel.kind() != ChannelKind::Presence
                || self.subscribes.try_take(burst, SUBSCRIBES_PER_SECOND)
            {
                self.ctx.hub.answer_subscribed(&self.link, &channel);
            }
            return;
        }
        let max = limits.max_subscriptions_per_connection;
        if self.channels.len() >= max {
            return self.refuse_subscription(
                channel.as_str(),
                "LimitReached",
                403,
                &format!("this connection is already subscribed to {max} channels, the configured maximum"),
            );
        }
        let burst = subscribe_burst(&self.ctx);
        if !self.subscribes.try_take(burst, SUBSCRIBES_PER_SECOND) {
            self.ctx.telemetry.refused("subscriptions");
            return self.refuse_subscription(
                channel.as_str(),
                "LimitReached",
                429,
                &format!(
                    "more than {burst} subscriptions at once or {SUBSCRIBES_PER_SECOND} a second from this connection; retry later"
                ),
            );
        }
        if !self.ctx.hub.has_local_subscribers(channel.as_str()) {
            let held = self.ctx.slots.held_by(self.address);
            let times = u32::try_from(held / CONNECTIONS_PER_ALLOWANCE)
                .unwrap_or(u32::MAX)
                .max(1);
            if !self
                .ctx
                .channel_creations
                .try_take_scaled(self.address, times)
            {
                self.ctx.telemetry.refused("channel_churn");
                return self.refuse_subscription(
                    channel.as_str(),
                    "LimitReached",
                    429,
                    &format!(
                        "more than {} new channels at once or {} a second from {} ({held} connections); retry later",
                        CHANNEL_CREATION_BURST.saturating_mul(times),
                        CHANNEL_CREATIONS_PER_SECOND.saturating_mul(times),
                        self.address
                    ),
                );
            }
        }
        let kind = channel.kind();
        let socket_id = self.link.id.to_string();
        if kind == ChannelKind::ServerToUser
            && self.user_id.as_deref() != channel.server_to_user_id()
        {
            return self.refuse_subscription(
                channel.as_str(),
                "AuthError",
                403,
                "only the socket signed in as this user may subscribe; call pusher.signin() first",
            );
        }
        if kind.requires_auth() {
            let channel_data = (kind == ChannelKind::Presence)
                .then_some(request.channel_data.as_deref())
                .flatten();
            let signed = channel_string_to_sign(&socket_id, channel.as_str(), channel_data);
            let settings = self.ctx.settings();
            let app = &settings.app;
            let verdict = match request.auth.as_deref() {
                Some(auth) => verify_auth(&app.key, app.secret.expose(), &signed, auth)
                    .map_err(|e| e.to_string()),
                None => Err(format!(
                    "no auth signature was sent; {} channels need one from the forum's auth endpoint",
                    channel.as_str().split('-').next().unwrap_or("private")
                )),
            };
            if let Err(message) = verdict {
                if self.serves_flarum2() {
                    // The daemon's answer: `pusher:error` with 4009, no
                    // subscription error; the connection stays open.
                    return self.error(
                        Some(close_code::UNAUTHORIZED),
                        &format!("Invalid Signature: subscription to {channel} refused: {message}"),
                    );
                }
                return self.refuse_subscription(channel.as_str(), "AuthError", 401, &message);
            }
        }
        let member = if kind == ChannelKind::Presence {
            match parse_presence_member(
                request.channel_data.as_deref(),
                limits.max_presence_user_id_length,
                limits.max_presence_user_info_bytes,
            ) {
                // flarum/realtime's daemon sends member ids as strings,
                // whatever the forum signed; its JS compares them so.
                Ok(mut member) if self.serves_flarum2() => {
                    member.user_id = Value::String(member.key.clone());
                    Some(member)
                }
                Ok(member) => Some(member),
                Err(problem) => {
                    return self.refuse_subscription(
                        channel.as_str(),
                        "InvalidChannelData",
                        400,
                        &problem.to_string(),
                    );
                }
            }
        } else {
            None
        };
        match self.ctx.hub.subscribe(&self.link, &channel, member) {
            Ok(()) => {
                if self.ctx.settings().verbose {
                    tracing::info!("Connection id {} subscribed to {channel}", self.link.id);
                }
                self.ctx.telemetry.record(
                    FeedItem::new(FeedKind::Subscribed)
                        .socket(self.link.id)
                        .channel(channel.as_str()),
                );
                self.realtime
                    .joined(&self.ctx, self.link.id, channel.as_str());
                self.channels.insert(channel);
            }
            Err(problem) => self.refuse_subscription(
                channel.as_str(),
                "LimitReached",
                403,
                &problem.to_string(),
            ),
        }
    }

    fn unsubscribe(&mut self, channel: &str) {
        if self.channels.remove(channel) {
            self.realtime.left(&self.ctx, self.link.id, channel);
            self.ctx.hub.unsubscribe(self.link.id, channel);
            self.ctx.telemetry.record(
                FeedItem::new(FeedKind::Unsubscribed)
                    .socket(self.link.id)
                    .channel(channel),
            );
            if self.ctx.settings().verbose {
                tracing::info!("Connection id {} unsubscribed from {channel}", self.link.id);
            }
        }
    }

    fn signin(&mut self, auth: &str, user_data: &str) {
        let settings = self.ctx.settings();
        let app = &settings.app;
        let signed = signin_string_to_sign(&self.link.id.to_string(), user_data);
        if let Err(problem) = verify_auth(&app.key, app.secret.expose(), &signed, auth) {
            return self.error(None, &format!("Signin refused: {problem}"));
        }
        let user = match parse_signin_user(user_data) {
            Ok(user) => user,
            Err(problem) => return self.error(None, &format!("Signin refused: {problem}")),
        };
        let max = self.ctx.settings().limits.max_watchlist_size;
        if user.watchlist.len() > max {
            return self.error(
                Some(close_code::WATCHLIST_LIMIT),
                &format!(
                    "Watchlist has {} users; the limit is {max}",
                    user.watchlist.len()
                ),
            );
        }
        // A socket that signs in as someone else loses its old user channel.
        if let Some(previous) = self.user_id.take() {
            let own = format!("#server-to-user-{previous}");
            self.unsubscribe(&own);
        }
        self.user_id = Some(user.id.clone());
        if self.ctx.settings().verbose {
            tracing::info!(
                "Connection id {} signed in as user {}",
                self.link.id,
                user.id
            );
        }
        self.reply(outgoing::signin_success(user_data));
        self.ctx.hub.sign_in(&self.link, user);
    }

    fn client_event(&mut self, event: &str, channel: &str, data: Value) {
        let ctx = self.ctx.clone();
        let settings = ctx.settings();
        if !settings.client_events {
            return self.error(
                None,
                "Client events are disabled; enable client_events (FLARUM_WS_CLIENT_EVENTS=true) to allow them",
            );
        }
        if event.len() > settings.limits.max_event_name_length {
            return self.error(None, "Client event name is too long");
        }
        let joined = self.channels.get(channel).cloned();
        match RealtimeSocket::screen(&self.ctx, channel, joined.is_some()) {
            Some(Screened::Dropped) => {
                tracing::debug!(
                    "Connection id {} client event on {channel}, not joined: dropped",
                    self.link.id
                );
                return;
            }
            Some(Screened::Refused(message)) => return self.error(None, message),
            None => {}
        }
        let Some(channel) = joined else {
            return self.error(
                None,
                &format!("Client event refused: not subscribed to {channel}"),
            );
        };
        if !channel.kind().allows_client_events() {
            return self.error(
                None,
                "Client events are only allowed on private and presence channels (not encrypted ones)",
            );
        }
        if !self.take_client_event_token() {
            self.ctx.telemetry.refused("client_events");
            return self.error(
                Some(close_code::CLIENT_EVENT_RATE_LIMIT),
                &format!(
                    "Client event rejected: more than {} per second",
                    settings.limits.client_events_per_second
                ),
            );
        }
        let user_id = match channel.kind() {
            ChannelKind::Presence => self.ctx.hub.member_key(self.link.id, channel.as_str()),
            _ => None,
        };
        if let Some(webhooks) = &self.ctx.webhooks {
            webhooks.client_event(
                channel.as_str(),
                event,
                &data,
                self.link.id,
                user_id.as_deref(),
            );
        }
        let Some(data) =
            self.realtime
                .client_event(&self.ctx, self.link.id, channel.as_str(), event, data)
        else {
            return;
        };
        let frame = outgoing::channel_event(event, channel.as_str(), &data, user_id.as_deref());
        // Cache channels remember the app's events, not client events.
        self.ctx.publish(
            &channel,
            Frame::from(frame),
            Some(self.link.id),
            false,
            FeedItem::new(FeedKind::ClientEvent)
                .socket(self.link.id)
                .channel(channel.as_str())
                .event(event)
                .data(&data),
        );
    }

    fn take_client_event_token(&mut self) -> bool {
        let limit = self.ctx.settings().limits.client_events_per_second;
        self.client_events.try_take(limit)
    }

    /// Leaves every channel and signs out when the socket closes; a second
    /// call (the `Drop` after the session's own) finds nothing left to do.
    pub fn finish(&mut self) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.realtime.closed(&self.ctx, self.link.id);
        let channels = std::mem::take(&mut self.channels);
        self.ctx
            .hub
            .remove_socket(self.link.id, channels.iter().map(ChannelName::as_str));
    }
}

impl Drop for Handler {
    /// However the session ends (a panic included), the socket leaves its
    /// channels: no ghost presence member, no stale subscription.
    fn drop(&mut self) {
        self.finish();
    }
}
