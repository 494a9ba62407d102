//! Logging (and, later, metrics).

pub mod logging;
