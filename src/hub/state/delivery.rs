//! Publishing: an event queued to a channel's subscribers (the fan-out
//! under the hub's read lock), and the cache channels' last events.

use std::time::Instant;

use super::{CachedEvent, Hub, State};
use crate::hub::mailbox::Frame;
use crate::protocol::{ChannelName, SocketId};

impl Hub {
    /// Queues `frame` to every subscriber of `channel` but `except`; remembers
    /// it for later subscribers when `cache` is set. Returns how many sockets
    /// it was queued to.
    pub fn publish(
        &self,
        channel: &ChannelName,
        frame: Frame,
        except: Option<SocketId>,
        cache: bool,
    ) -> usize {
        if cache {
            let mut state = self.write();
            let full = state.cache.len() >= state.limits.max_cached_channels;
            if full && !state.cache.contains_key(channel) {
                Self::forget_oldest_cached(&mut state);
            }
            state.cache.insert(
                channel.clone(),
                CachedEvent {
                    frame: frame.clone(),
                    stored: Instant::now(),
                },
            );
            return Self::fan_out(&state, channel.as_str(), frame, except);
        }
        Self::fan_out(&self.read(), channel.as_str(), frame, except)
    }

    fn fan_out(state: &State, channel: &str, frame: Frame, except: Option<SocketId>) -> usize {
        Self::fan_out_except(state, channel, frame, except.as_slice())
    }

    fn fan_out_except(state: &State, channel: &str, frame: Frame, except: &[SocketId]) -> usize {
        let Some(entry) = state.channels.get(channel) else {
            return 0;
        };
        let mut delivered = 0;
        let sharers = entry.subscribers.len().saturating_sub(except.len());
        for (id, subscriber) in &entry.subscribers {
            if !except.contains(id) && subscriber.link.send_shared(frame.clone(), sharers) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Queues `frame` to every subscriber of `channel` but those in
    /// `except` (flarum/realtime's typing relay leaves out the sender and
    /// whoever already got a named copy). Never cached.
    pub fn publish_except(&self, channel: &str, frame: Frame, except: &[SocketId]) -> usize {
        Self::fan_out_except(&self.read(), channel, frame, except)
    }

    /// Queues `frame` to one subscriber of `channel`; whether it was one.
    pub fn send_to(&self, channel: &str, socket: SocketId, frame: Frame) -> bool {
        self.read()
            .channels
            .get(channel)
            .and_then(|entry| entry.subscribers.get(&socket))
            .is_some_and(|subscriber| subscriber.link.send(frame))
    }

    /// Makes room for one more cached event: the oldest is forgotten. A
    /// scan, but only when the cache is full and a new channel arrives.
    fn forget_oldest_cached(state: &mut State) {
        let oldest = state
            .cache
            .iter()
            .min_by_key(|(_, cached)| cached.stored)
            .map(|(name, _)| name.clone());
        if let Some(name) = oldest {
            state.cache.remove(&name);
        }
    }

    /// Drops cached events older than the TTL so forgotten channels do not
    /// hold memory forever. Returns how many were dropped.
    pub fn expire_cache(&self) -> usize {
        let mut state = self.write();
        let ttl = state.limits.cache_ttl;
        let before = state.cache.len();
        state
            .cache
            .retain(|_, cached| cached.stored.elapsed() < ttl);
        if state.cache.is_empty() {
            // A map keeps its capacity: let a crowd of expired channels go.
            state.cache.shrink_to_fit();
        }
        before - state.cache.len()
    }
}
