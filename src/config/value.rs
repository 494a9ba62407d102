//! Value types of settings and how they are read from text (environment and
//! `.env`), so that `FLARUM_WS_PORT=abc` fails with a reason instead of being
//! ignored.

use std::fmt;

use serde::Deserialize;

/// A secret that never prints: `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for signing; never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Parsing a setting from the text of a variable.
pub trait FromVariable: Sized {
    fn from_variable(text: &str) -> Result<Self, String>;
}

impl FromVariable for String {
    fn from_variable(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

impl FromVariable for Secret {
    fn from_variable(text: &str) -> Result<Self, String> {
        Ok(Secret(text.to_owned()))
    }
}

impl FromVariable for bool {
    fn from_variable(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            _ => Err("expected true or false".into()),
        }
    }
}

/// Lists are comma-separated in variables (YAML uses a real list).
impl FromVariable for Vec<String> {
    fn from_variable(text: &str) -> Result<Self, String> {
        Ok(text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect())
    }
}

macro_rules! numeric_from_variable {
    ($($ty:ty),*) => {$(
        impl FromVariable for $ty {
            fn from_variable(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|_| {
                    format!("expected a whole number from {} to {}", <$ty>::MIN, <$ty>::MAX)
                })
            }
        }
    )*};
}
numeric_from_variable!(u16, u32, u64, usize);
