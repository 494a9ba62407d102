//! Channel names: validation and the one classifier every other module uses.
//!
//! The kind of a channel decides whether it needs a signature, whether it has
//! members, whether client events may use it and whether its last event is
//! cached. Keeping that in one anchored prefix match avoids the classic bug of
//! peers where `private-encrypted-cache-x` is treated differently in different
//! places.

use std::fmt;
use std::sync::Arc;

/// Prefix of the channel a signed-in user's server-to-user events arrive on.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// What kind of channel a name denotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// Anyone may subscribe.
    Public,
    /// Needs `auth` signed over `socket_id:channel`.
    Private,
    /// Like private, and the server only relays end-to-end encrypted payloads.
    PrivateEncrypted,
    /// Needs `auth` over `socket_id:channel:channel_data`; has members.
    Presence,
    /// `#server-to-user-{id}`: only the socket signed in as `{id}` may join.
    ServerToUser,
}

impl ChannelKind {
    /// Whether subscribing requires a channel authorization signature.
    pub fn requires_auth(self) -> bool {
        matches!(
            self,
            Self::Private | Self::PrivateEncrypted | Self::Presence
        )
    }

    /// Whether clients may send `client-*` events on it.
    pub fn allows_client_events(self) -> bool {
        matches!(self, Self::Private | Self::Presence)
    }
}

/// A classified channel: its kind and whether it is a cache channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelClass {
    pub kind: ChannelKind,
    pub cached: bool,
}

/// Classifies a channel name by its prefix, most specific first, anchored at
/// the start only.
pub fn classify(name: &str) -> ChannelClass {
    const PREFIXES: [(&str, ChannelKind, bool); 8] = [
        (
            "private-encrypted-cache-",
            ChannelKind::PrivateEncrypted,
            true,
        ),
        ("private-encrypted-", ChannelKind::PrivateEncrypted, false),
        ("private-cache-", ChannelKind::Private, true),
        ("private-", ChannelKind::Private, false),
        ("presence-cache-", ChannelKind::Presence, true),
        ("presence-", ChannelKind::Presence, false),
        ("cache-", ChannelKind::Public, true),
        (SERVER_TO_USER_PREFIX, ChannelKind::ServerToUser, false),
    ];
    for (prefix, kind, cached) in PREFIXES {
        if name.starts_with(prefix) {
            return ChannelClass { kind, cached };
        }
    }
    ChannelClass {
        kind: ChannelKind::Public,
        cached: false,
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    #[error("channel name is empty")]
    Empty,
    #[error("channel name is {len} characters long; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error(
        "channel name contains {found:?}; allowed are letters, digits and _ - = @ , . ; \
         (and # only in #server-to-user-<id>)"
    )]
    InvalidCharacter { found: char },
    #[error("#server-to-user- needs a user id after the prefix")]
    MissingUserId,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '=' | '@' | ',' | '.' | ';')
}

/// A validated channel name with its class, cheap to clone (shared string).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ChannelName {
    name: Arc<str>,
}

impl ChannelName {
    /// Validates `name` against the charset and `max_len`.
    pub fn parse(name: &str, max_len: usize) -> Result<Self, ChannelError> {
        if name.is_empty() {
            return Err(ChannelError::Empty);
        }
        let len = name.chars().count();
        if len > max_len {
            return Err(ChannelError::TooLong { len, max: max_len });
        }
        let rest = match name.strip_prefix(SERVER_TO_USER_PREFIX) {
            Some("") => return Err(ChannelError::MissingUserId),
            Some(user_id) => user_id,
            None => name,
        };
        if let Some(found) = rest.chars().find(|c| !is_name_char(*c)) {
            return Err(ChannelError::InvalidCharacter { found });
        }
        Ok(Self { name: name.into() })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Public, private or presence: who may subscribe.
    pub fn class(&self) -> ChannelClass {
        classify(&self.name)
    }

    /// Plain, encrypted or cache: how its events are carried.
    pub fn kind(&self) -> ChannelKind {
        self.class().kind
    }

    /// For `#server-to-user-{id}`, the user id.
    pub fn server_to_user_id(&self) -> Option<&str> {
        self.name.strip_prefix(SERVER_TO_USER_PREFIX)
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.name, f)
    }
}

impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChannelKind::*;

    #[test]
    fn classifies_most_specific_prefix_first() {
        let cases = [
            ("private-encrypted-cache-a", PrivateEncrypted, true),
            ("private-encrypted-a", PrivateEncrypted, false),
            ("private-cache-a", Private, true),
            ("private-a", Private, false),
            ("presence-cache-a", Presence, true),
            ("presence-a", Presence, false),
            ("cache-a", Public, true),
            ("#server-to-user-7", ServerToUser, false),
            ("public", Public, false),
            ("my-private-a", Public, false),
            ("xcache-a", Public, false),
        ];
        for (name, kind, cached) in cases {
            assert_eq!(classify(name), ChannelClass { kind, cached }, "{name}");
        }
    }

    #[test]
    fn validates_charset_and_length() {
        assert!(ChannelName::parse("private-user1=@,.;_-", 200).is_ok());
        assert_eq!(ChannelName::parse("", 200), Err(ChannelError::Empty));
        assert!(matches!(
            ChannelName::parse(&"a".repeat(201), 200),
            Err(ChannelError::TooLong { len: 201, max: 200 })
        ));
        assert!(matches!(
            ChannelName::parse("a b", 200),
            Err(ChannelError::InvalidCharacter { found: ' ' })
        ));
        assert!(matches!(
            ChannelName::parse("#other", 200),
            Err(ChannelError::InvalidCharacter { found: '#' })
        ));
        assert_eq!(
            ChannelName::parse("#server-to-user-", 200),
            Err(ChannelError::MissingUserId)
        );
        let own = ChannelName::parse("#server-to-user-42", 200).unwrap();
        assert_eq!(own.server_to_user_id(), Some("42"));
    }
}
