//! flarum/realtime's ambient typing signals, beyond the discussion's own
//! typing indicator:
//!
//! - **Index typing**: `index-typing` `{id, typing, tags}` on
//!   `public-index-typing` when someone starts typing in a discussion guests
//!   provably see, again every 3 s while it lasts, and `typing: false` 6 s
//!   after the last ping (checked every second); for a discussion guests do
//!   not see, with the restricted setting on, on
//!   `private-index-typing-tag={id}` when that tag is the only restricted
//!   tag in the discussion's tags and their parents (the forum lets only
//!   those who see the tag join its channel, and seeing it is then exactly
//!   seeing the discussion). Composing a new discussion
//!   (`client-index-typing-tags` on `private-user={id}`) lights each tag the
//!   user provably sees, `{source: "u{id}", typing, tags: [tag]}`, on the
//!   public channel when guests see the tag, else on its own channel.
//! - **Typing activity**: `typing-activity` on `private-typing-activity`,
//!   sent per subscriber, at most one per typist and target every 2 s: only
//!   to identified subscribers who provably see the discussion (or, for a
//!   new discussion, only the tags they provably see), naming the typist
//!   only when they disclose their online status or the subscriber holds
//!   `user.viewLastSeenAt`.
//!
//! What "provably" means is in `forum::visibility`; anything else is not
//! sent. Typing activity reaches the subscribers on the typist's node only.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::RealtimeForum;
use crate::forum::Actor;
use crate::hub::Frame;
use crate::protocol::messages::outgoing;
use crate::protocol::{ChannelName, SocketId};
use crate::server::context::ServerContext;
use crate::telemetry::feed::{FeedItem, FeedKind};

use super::index_state::{Key, Routes};

/// How often falling edges are looked for.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Where guests see typing in the discussion list.
pub const PUBLIC_CHANNEL: &str = "public-index-typing";
/// Where moderators see who types what (typing activity).
pub const ACTIVITY_CHANNEL: &str = "private-typing-activity";

fn tag_channel(tag: u64) -> String {
    format!("private-index-typing-tag={tag}")
}

fn signal(key: Key, typing: bool, tags: &[u64]) -> Value {
    match key {
        Key::Discussion(id) => json!({"id": id, "typing": typing, "tags": tags}),
        Key::Compose { user, .. } => {
            json!({"source": format!("u{user}"), "typing": typing, "tags": tags})
        }
    }
}

fn announce(ctx: &ServerContext, key: Key, typing: bool, routes: &Routes) {
    for (channel, tags) in routes {
        let Ok(name) = ChannelName::parse(channel, usize::MAX) else {
            continue;
        };
        let data = signal(key, typing, tags);
        let frame = outgoing::channel_event("index-typing", channel, &data, None);
        ctx.publish(
            &name,
            Frame::from(frame),
            None,
            false,
            FeedItem::new(FeedKind::ApiEvent)
                .channel(channel)
                .event("index-typing")
                .data(&data),
        );
    }
}

/// Where a discussion's index typing goes (cached 30 s).
async fn discussion_routes(forum: &RealtimeForum, discussion: u64) -> Routes {
    if let Some(routes) = forum.index.cached_routes(discussion) {
        return routes;
    }
    let visibility = &forum.visibility;
    let routes = match visibility.shown_discussion(discussion).await {
        None => Vec::new(),
        Some(facts) => {
            if visibility.can_see(Actor::Guest, discussion).await {
                vec![(PUBLIC_CHANNEL.to_owned(), facts.own_tags.clone())]
            } else {
                let restricted: Vec<u64> = facts
                    .tags
                    .iter()
                    .filter(|(_, restricted)| *restricted)
                    .map(|(id, _)| *id)
                    .collect();
                match restricted.as_slice() {
                    [only] if forum.index_restricted && facts.own_tags.contains(only) => {
                        vec![(tag_channel(*only), vec![*only])]
                    }
                    _ => Vec::new(),
                }
            }
        }
    };
    forum.index.remember_routes(discussion, routes.clone());
    routes
}

/// Someone (`typist`, when proven) typed in `discussion` at `time`.
pub async fn discussion_typing(
    ctx: Arc<ServerContext>,
    forum: Arc<RealtimeForum>,
    typist: Option<u64>,
    discussion: u64,
    time: Value,
) {
    let routes = discussion_routes(&forum, discussion).await;
    if !routes.is_empty()
        && let Some(routes) = forum.index.ping(Key::Discussion(discussion), routes)
    {
        announce(&ctx, Key::Discussion(discussion), true, &routes);
    }
    let Some(typist) = typist else {
        return;
    };
    if forum.index.throttled(format!("{typist}:d{discussion}")) {
        return;
    }
    deliver_activity(&ctx, &forum, typist, |subscriber| {
        let forum = forum.clone();
        let time = time.clone();
        async move {
            forum
                .visibility
                .can_see(Actor::User(subscriber), discussion)
                .await
                .then(|| json!({"discussionId": discussion, "tagIds": Value::Null, "time": time}))
        }
    })
    .await;
}

/// `user` is composing a new discussion in `claimed` tags.
pub async fn compose_typing(
    ctx: Arc<ServerContext>,
    forum: Arc<RealtimeForum>,
    user: u64,
    claimed: Vec<u64>,
) {
    let visibility = &forum.visibility;
    // The index signal carries `u{id}`: for a user who hides their online
    // status, or one who cannot be looked up, it is not sent (fail closed;
    // the daemon sends it anyway). Typing activity below names them only to
    // whom may see them, as for discussions.
    let discloses = forum
        .identities
        .of(user)
        .await
        .is_some_and(|who| who.disclose_online);
    let announced = if discloses {
        visibility.visible_tags(Actor::User(user), &claimed).await
    } else {
        Vec::new()
    };
    for tag in announced {
        let guests = !visibility
            .visible_tags(Actor::Guest, &[tag])
            .await
            .is_empty();
        let channel = if guests {
            PUBLIC_CHANNEL.to_owned()
        } else if forum.index_restricted {
            tag_channel(tag)
        } else {
            continue;
        };
        let key = Key::Compose { user, tag };
        if let Some(routes) = forum.index.ping(key, vec![(channel, vec![tag])]) {
            announce(&ctx, key, true, &routes);
        }
    }
    let mut key_tags = claimed.clone();
    key_tags.sort_unstable();
    key_tags.dedup();
    let key = format!(
        "{user}:t{}",
        key_tags
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    if forum.index.throttled(key) {
        return;
    }
    deliver_activity(&ctx, &forum, user, |subscriber| {
        let forum = forum.clone();
        let claimed = key_tags.clone();
        async move {
            let tags = forum
                .visibility
                .visible_tags(Actor::User(subscriber), &claimed)
                .await;
            Some(json!({"discussionId": Value::Null, "tagIds": tags, "time": Value::Null}))
        }
    })
    .await;
}

/// Sends `typing-activity` to each identified subscriber of the activity
/// channel (but the typist) for whom `build` gives data.
async fn deliver_activity<F, Fut>(ctx: &ServerContext, forum: &RealtimeForum, typist: u64, build: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let subscribers: Vec<SocketId> = ctx.hub.subscriber_ids(ACTIVITY_CHANNEL);
    if subscribers.is_empty() {
        return;
    }
    let identity = forum.identities.of(typist).await;
    for socket in subscribers {
        let Some(subscriber) = ctx.socket_users.get(socket) else {
            continue;
        };
        if subscriber == typist {
            continue;
        }
        let Some(mut data) = build(subscriber).await else {
            continue;
        };
        let named = match &identity {
            Some(who) => {
                who.disclose_online
                    || forum
                        .visibility
                        .has_permission(Actor::User(subscriber), "user.viewLastSeenAt")
                        .await
            }
            None => false,
        };
        data["userId"] = if named { json!(typist) } else { Value::Null };
        data["displayName"] = match (&identity, named) {
            (Some(who), true) => json!(who.display_name),
            _ => Value::Null,
        };
        let frame = outgoing::channel_event("typing-activity", ACTIVITY_CHANNEL, &data, None);
        ctx.hub
            .send_to(ACTIVITY_CHANNEL, socket, Frame::from(frame));
    }
}

/// Says `typing: false` for whatever stopped, every second, until shutdown.
pub async fn sweep(ctx: Arc<ServerContext>) {
    let shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
        let Some(forum) = ctx.realtime.load_full() else {
            continue;
        };
        for (key, routes) in forum.index.expired() {
            announce(&ctx, key, false, &routes);
        }
    }
}
