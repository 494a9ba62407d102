//! Webhook receivers as the admin writes them: a YAML list under
//! `webhooks:` (or the same list as JSON in `FLARUM_WS_WEBHOOKS`), plus
//! `webhook_url` for the common case of one receiver of everything.

use std::fmt;

use serde::Deserialize;

use super::value::FromVariable;

/// The kinds of webhook event Pusher sends, by their wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookKind {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    ClientEvent,
    CacheMiss,
    SubscriptionCount,
}

impl WebhookKind {
    /// Every kind, in Pusher's order.
    pub const ALL: [WebhookKind; 7] = [
        Self::ChannelOccupied,
        Self::ChannelVacated,
        Self::MemberAdded,
        Self::MemberRemoved,
        Self::ClientEvent,
        Self::CacheMiss,
        Self::SubscriptionCount,
    ];

    /// The kind as Pusher names it in a webhook's `events` list.
    pub fn name(self) -> &'static str {
        match self {
            Self::ChannelOccupied => "channel_occupied",
            Self::ChannelVacated => "channel_vacated",
            Self::MemberAdded => "member_added",
            Self::MemberRemoved => "member_removed",
            Self::ClientEvent => "client_event",
            Self::CacheMiss => "cache_miss",
            Self::SubscriptionCount => "subscription_count",
        }
    }
}

/// One receiver and what it wants.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookTarget {
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// The kinds sent; empty: every kind.
    #[serde(default)]
    pub events: Vec<WebhookKind>,
    /// Only channels whose name starts with this.
    #[serde(default)]
    pub channel_prefix: Option<String>,
}

impl WebhookTarget {
    /// Every event kind, every channel.
    pub fn everything(url: String) -> Self {
        Self {
            url,
            events: Vec::new(),
            channel_prefix: None,
        }
    }

    /// Whether an event of `kind` on `channel` goes to this receiver.
    pub fn wants(&self, kind: WebhookKind, channel: &str) -> bool {
        (self.events.is_empty() || self.events.contains(&kind))
            && self
                .channel_prefix
                .as_deref()
                .is_none_or(|prefix| channel.starts_with(prefix))
    }

    /// Why the URL cannot be used, if it cannot.
    pub fn url_problem(&self) -> Option<String> {
        match self.url.parse::<hyper::Uri>() {
            Err(_) => Some(format!(
                "{:?} is not a URL; write it as http://host[:port]/path or https://host[:port]/path",
                self.url
            )),
            Ok(uri) if !matches!(uri.scheme_str(), Some("http" | "https")) => Some(format!(
                "{:?} must start with http:// or https://",
                self.url
            )),
            Ok(uri) if uri.host().is_none_or(str::is_empty) => {
                Some(format!("{:?} names no host", self.url))
            }
            Ok(_) => None,
        }
    }
}

impl fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)?;
        let kinds: Vec<&str> = self.events.iter().map(|kind| kind.name()).collect();
        match (kinds.is_empty(), &self.channel_prefix) {
            (true, None) => Ok(()),
            (true, Some(prefix)) => write!(f, " (channels {prefix}*)"),
            (false, None) => write!(f, " ({})", kinds.join(", ")),
            (false, Some(prefix)) => write!(f, " ({}; channels {prefix}*)", kinds.join(", ")),
        }
    }
}

/// The `webhooks` setting.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct WebhookList(pub Vec<WebhookTarget>);

impl fmt::Debug for WebhookList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

/// The same list as in YAML, written as JSON (or YAML flow) text.
impl FromVariable for WebhookList {
    fn from_variable(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self(Vec::new()));
        }
        serde_yaml::from_str(text).map_err(|e| {
            format!(
                "expected a list like [{{\"url\": \"https://example.com/hook\", \"events\": [\"member_added\"]}}]: {e}"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variable_holds_the_list_as_json() {
        let list = WebhookList::from_variable(
            r#"[{"url": "http://127.0.0.1:9/hook", "events": ["member_added"], "channel_prefix": "presence-"}]"#,
        )
        .unwrap();
        let target = &list.0[0];
        assert!(target.wants(WebhookKind::MemberAdded, "presence-room"));
        assert!(!target.wants(WebhookKind::MemberAdded, "private-room"));
        assert!(!target.wants(WebhookKind::ChannelOccupied, "presence-room"));
        let error =
            WebhookList::from_variable(r#"[{"url": "x", "events": ["joined"]}]"#).unwrap_err();
        assert!(error.contains("joined"), "{error}");
    }

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        let problem = |url: &str| WebhookTarget::everything(url.into()).url_problem();
        assert_eq!(problem("https://forum.example/hook"), None);
        assert!(problem("ftp://forum.example/").unwrap().contains("http://"));
        assert!(problem("forum.example/hook").is_some());
    }
}
