//! The dashboard's picture of the past: the questions an admin asks after
//! the fact ("did the realtime die last night?", "how many tabs at the
//! peak?", "were visitors refused?", "did the Redis link drop?") answered
//! without a monitoring stack. A sample of the server's counters every
//! [`FINE_STEP`] is kept for the last hour, and one every [`COARSE_STEP`]
//! (gauges at their highest, rates averaged) for the last day, each in a
//! ring of fixed size; marks say when the process started, when settings
//! were reloaded, when the Redis link dropped and came back, and when
//! refusals began. Everything is in memory: a restart starts the picture
//! again, with a mark.
//!
//! Bounded: [`MAX_BYTES`] in all (a row of SECURITY.md's limits table),
//! whatever happens; sampling costs one read of the counters per step,
//! whether anyone looks or not.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How often a sample is taken (and the last hour's resolution).
pub const FINE_STEP: Duration = Duration::from_secs(5);

/// The last day's resolution.
pub const COARSE_STEP: Duration = Duration::from_secs(300);

const FINE_SAMPLES: usize = 3600 / 5;
const COARSE_SAMPLES: usize = 24 * 3600 / 300;
const FINE_PER_COARSE: usize = 300 / 5;

/// Marks kept (the oldest go first).
pub const MAX_MARKS: usize = 200;

/// The longest text of a mark, in bytes.
const MAX_MARK_TEXT: usize = 240;

/// What a sample holds, in this order: (name, what it is, unit).
pub const SERIES: [(&str, &str, &str); SERIES_COUNT] = [
    ("connections", "open connections", "connections"),
    ("subscriptions", "subscriptions", "subscriptions"),
    ("messages_in", "messages in", "per second"),
    ("messages_out", "messages out", "per second"),
    ("api_events", "API events", "per second"),
    ("refused_server_full", "server full", "per second"),
    ("refused_address_share", "address share", "per second"),
    (
        "refused_tcp_address_share",
        "TCP address share",
        "per second",
    ),
    ("refused_subscriptions", "subscription rate", "per second"),
    ("refused_channel_churn", "channel churn", "per second"),
    ("refused_client_events", "client events", "per second"),
    ("refused_queued_bytes", "queued bytes", "per second"),
    ("refused_frames_throttled", "frames throttled", "per second"),
    (
        "refused_upgrades",
        "websockets refused (4001 to 4301)",
        "per second",
    ),
    ("webhooks_sent", "webhooks sent", "per second"),
    ("webhooks_failed", "webhooks failed", "per second"),
    ("webhooks_dropped", "webhooks dropped", "per second"),
    ("redis_up", "Redis link up", "1 up, 0 down"),
    ("cluster_nodes", "cluster nodes", "nodes"),
];

/// Series in a sample.
pub const SERIES_COUNT: usize = 19;

/// The first of the refusal series, in [`SERIES`].
const FIRST_REFUSAL: usize = 5;
/// One past the last refusal series.
const END_REFUSALS: usize = 14;

/// Whether a series is a level (kept at its highest when coarsened) rather
/// than a rate (averaged).
fn is_level(series: usize) -> bool {
    matches!(series, CONNECTIONS | SUBSCRIPTIONS | REDIS_UP | NODES)
}

/// Where the levels are in [`SERIES`].
const CONNECTIONS: usize = 0;
const SUBSCRIPTIONS: usize = 1;
const REDIS_UP: usize = 17;
const NODES: usize = 18;

/// The bytes the history can hold at most.
pub const MAX_BYTES: usize = (FINE_SAMPLES + COARSE_SAMPLES + FINE_PER_COARSE)
    * std::mem::size_of::<Sample>()
    + MAX_MARKS * (std::mem::size_of::<Mark>() + MAX_MARK_TEXT);

/// The server's counters at one moment: totals since start for what is
/// counted, levels for what is measured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading {
    pub connections: u64,
    pub subscriptions: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub api_events: u64,
    /// Refusals by reason, in the order of `SERIES` from
    /// `refused_server_full` (`metrics::REFUSAL_REASONS`' order).
    pub refusals: [u64; END_REFUSALS - FIRST_REFUSAL - 1],
    /// Websocket upgrades refused (any 4xxx code).
    pub upgrades_refused: u64,
    pub webhooks_sent: u64,
    pub webhooks_failed: u64,
    pub webhooks_dropped: u64,
    /// On a cluster: whether the Redis link is up, the nodes, and how many
    /// times the link was lost so far (a drop between two samples counts).
    pub cluster: Option<(bool, u64, u64)>,
}

/// One point of every series.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Unix seconds.
    pub at: u64,
    pub values: [f32; SERIES_COUNT],
}

/// Something that happened, shown on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    /// Unix seconds.
    pub at: u64,
    /// `start`, `reload`, `redis_down`, `redis_up`, `refusals`, `handover`.
    pub kind: &'static str,
    pub text: String,
}

/// The rings of samples and the marks.
#[derive(Debug)]
pub struct History {
    fine: VecDeque<Sample>,
    coarse: VecDeque<Sample>,
    /// Fine samples since the last coarse one.
    pending: Vec<Sample>,
    marks: VecDeque<Mark>,
    last: Option<(Reading, SystemTime)>,
    /// When a refusal was last seen, so that one episode makes one mark.
    last_refusal: Option<u64>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            fine: VecDeque::with_capacity(FINE_SAMPLES),
            coarse: VecDeque::with_capacity(COARSE_SAMPLES),
            pending: Vec::with_capacity(FINE_PER_COARSE),
            marks: VecDeque::with_capacity(MAX_MARKS),
            last: None,
            last_refusal: None,
        }
    }
}

/// A quiet spell after which refusals make a new mark.
const REFUSAL_QUIET: u64 = 60;

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl History {
    /// Records `text` as a mark of `kind` now.
    pub fn mark(&mut self, kind: &'static str, text: impl Into<String>) {
        self.mark_at(unix(SystemTime::now()), kind, text.into());
    }

    fn mark_at(&mut self, at: u64, kind: &'static str, mut text: String) {
        if text.len() > MAX_MARK_TEXT {
            let mut end = MAX_MARK_TEXT;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.shrink_to_fit();
        }
        if self.marks.len() == MAX_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back(Mark { at, kind, text });
    }

    /// Takes the sample of `reading` at `now`: rates from the counters'
    /// change since the last reading, marks for a Redis link that changed
    /// and for refusals after a quiet spell.
    pub fn sample(&mut self, reading: Reading, now: SystemTime) {
        let at = unix(now);
        let mut values = [0.0f32; SERIES_COUNT];
        values[CONNECTIONS] = reading.connections as f32;
        values[SUBSCRIPTIONS] = reading.subscriptions as f32;
        if let Some((redis_up, nodes, _)) = reading.cluster {
            values[REDIS_UP] = f32::from(u8::from(redis_up));
            values[NODES] = nodes as f32;
        }
        if let Some((previous, then)) = self.last {
            let seconds = now
                .duration_since(then)
                .unwrap_or(FINE_STEP)
                .as_secs_f32()
                .max(0.001);
            let rate = |now: u64, before: u64| now.saturating_sub(before) as f32 / seconds;
            values[2] = rate(reading.messages_in, previous.messages_in);
            values[3] = rate(reading.messages_out, previous.messages_out);
            values[4] = rate(reading.api_events, previous.api_events);
            let mut refused = Vec::new();
            let totals = reading.refusals.iter().chain([&reading.upgrades_refused]);
            let before = previous
                .refusals
                .into_iter()
                .chain([previous.upgrades_refused]);
            for (n, (now, before)) in totals.zip(before).enumerate() {
                values[FIRST_REFUSAL + n] = rate(*now, before);
                if *now > before {
                    refused.push(format!("{} {}", now - before, SERIES[FIRST_REFUSAL + n].1));
                }
            }
            values[14] = rate(reading.webhooks_sent, previous.webhooks_sent);
            values[15] = rate(reading.webhooks_failed, previous.webhooks_failed);
            values[16] = rate(reading.webhooks_dropped, previous.webhooks_dropped);
            if !refused.is_empty() {
                let quiet = self
                    .last_refusal
                    .is_none_or(|last| at.saturating_sub(last) > REFUSAL_QUIET);
                if quiet {
                    self.mark_at(
                        at,
                        "refusals",
                        format!("Refusals began: {}", refused.join(", ")),
                    );
                }
                self.last_refusal = Some(at);
            }
            if let (Some((was_up, _, drops_before)), Some((up, _, drops))) =
                (previous.cluster, reading.cluster)
            {
                let dropped = drops > drops_before;
                if dropped {
                    self.mark_at(at, "redis_down", "The Redis link dropped".into());
                }
                if up && drops > 0 && (dropped || !was_up) {
                    self.mark_at(at, "redis_up", "The Redis link is back".into());
                }
            }
        }
        self.last = Some((reading, now));
        let sample = Sample { at, values };
        if self.fine.len() == FINE_SAMPLES {
            self.fine.pop_front();
        }
        self.fine.push_back(sample);
        self.pending.push(sample);
        if self.pending.len() == FINE_PER_COARSE {
            let coarse = coarsen(&self.pending);
            self.pending.clear();
            if self.coarse.len() == COARSE_SAMPLES {
                self.coarse.pop_front();
            }
            self.coarse.push_back(coarse);
        }
    }

    /// The last hour (`day`: false) or the last day, with the marks in it.
    pub fn view(&self, day: bool) -> View {
        let (samples, step): (Vec<Sample>, Duration) = if day {
            // The day's samples, then the part of the hour not yet coarsened.
            let mut samples: Vec<Sample> = self.coarse.iter().copied().collect();
            if !self.pending.is_empty() {
                samples.push(coarsen(&self.pending));
            }
            (samples, COARSE_STEP)
        } else {
            (self.fine.iter().copied().collect(), FINE_STEP)
        };
        let from = samples.first().map_or(0, |s| s.at);
        View {
            step_seconds: step.as_secs(),
            series: SERIES
                .iter()
                .map(|(name, label, unit)| SeriesName { name, label, unit })
                .collect(),
            points: samples
                .iter()
                .map(|s| (s.at, s.values.iter().map(|v| round(*v)).collect()))
                .collect(),
            marks: self
                .marks
                .iter()
                .filter(|m| m.at + step.as_secs() >= from)
                .cloned()
                .collect(),
        }
    }
}

/// Two decimals are plenty for a picture, and keep the JSON short.
fn round(value: f32) -> f64 {
    (f64::from(value) * 100.0).round() / 100.0
}

/// One sample standing for `samples`: levels at their highest, rates
/// averaged, at the first one's time.
fn coarsen(samples: &[Sample]) -> Sample {
    let mut values = [0.0f32; SERIES_COUNT];
    for (series, value) in values.iter_mut().enumerate() {
        let all = samples.iter().map(|s| s.values[series]);
        *value = if is_level(series) {
            all.fold(0.0, f32::max)
        } else {
            all.sum::<f32>() / samples.len().max(1) as f32
        };
    }
    Sample {
        at: samples.first().map_or(0, |s| s.at),
        values,
    }
}

/// A series' name, as the page shows it.
#[derive(Debug, Serialize)]
pub struct SeriesName {
    pub name: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
}

/// What `/dashboard/history` answers.
#[derive(Debug, Serialize)]
pub struct View {
    pub step_seconds: u64,
    pub series: Vec<SeriesName>,
    /// (unix seconds, a value per series).
    pub points: Vec<(u64, Vec<f64>)>,
    pub marks: Vec<Mark>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + seconds)
    }

    #[test]
    fn rates_come_from_the_counters_change_and_levels_as_read() {
        let mut history = History::default();
        let mut reading = Reading {
            connections: 10,
            ..Reading::default()
        };
        history.sample(reading, at(0));
        reading.messages_out = 50;
        reading.connections = 12;
        history.sample(reading, at(5));
        let view = history.view(false);
        assert_eq!(view.points.len(), 2);
        assert_eq!(view.points[1].1[0], 12.0);
        assert_eq!(view.points[1].1[3], 10.0, "50 messages in 5 s");
    }

    #[test]
    fn the_rings_stay_their_size_and_the_day_keeps_peaks() {
        let mut history = History::default();
        let mut reading = Reading::default();
        for step in 0..(FINE_SAMPLES as u64 * 30) {
            reading.connections = if step == 7 { 5_000 } else { 10 };
            reading.api_events += 5;
            history.sample(reading, at(step * 5));
        }
        assert_eq!(history.fine.len(), FINE_SAMPLES);
        assert_eq!(history.coarse.len(), COARSE_SAMPLES);
        let day = history.view(true);
        assert!(day.points.len() <= COARSE_SAMPLES + 1);
        let peak = history
            .coarse
            .iter()
            .map(|s| s.values[0])
            .fold(0.0, f32::max);
        assert_eq!(peak, 10.0, "the peak at step 7 has left the day");
        let mut fresh = History::default();
        for step in 0..FINE_PER_COARSE as u64 {
            reading.connections = if step == 7 { 5_000 } else { 10 };
            reading.api_events += 5;
            fresh.sample(reading, at(step * 5));
        }
        assert_eq!(
            fresh.view(true).points[0].1[0],
            5_000.0,
            "a peak survives coarsening"
        );
        assert!(
            (fresh.view(true).points[0].1[4] - 1.0).abs() < 0.05,
            "a rate is averaged"
        );
    }

    #[test]
    fn marks_for_refusals_after_quiet_and_for_the_redis_link() {
        let mut history = History::default();
        let mut reading = Reading {
            cluster: Some((false, 1, 0)),
            ..Reading::default()
        };
        history.sample(reading, at(0));
        reading.cluster = Some((true, 2, 0));
        history.sample(reading, at(5));
        reading.refusals[0] = 3;
        reading.cluster = Some((false, 2, 1));
        history.sample(reading, at(10));
        reading.refusals[0] = 4;
        history.sample(reading, at(15));
        reading.cluster = Some((true, 2, 1));
        history.sample(reading, at(20));
        // Dropped and back between two samples.
        reading.cluster = Some((true, 2, 2));
        history.sample(reading, at(25));
        let kinds: Vec<&str> = history.marks.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                "refusals",
                "redis_down",
                "redis_up",
                "redis_down",
                "redis_up"
            ],
            "the first connection is no mark"
        );
        assert_eq!(history.marks[0].text, "Refusals began: 3 server full");
    }

    #[test]
    fn the_refusal_series_follow_the_metric_s_reasons() {
        for (n, reason) in crate::telemetry::metrics::REFUSAL_REASONS
            .iter()
            .enumerate()
        {
            assert_eq!(SERIES[FIRST_REFUSAL + n].0, format!("refused_{reason}"));
        }
        assert_eq!(SERIES[END_REFUSALS - 1].0, "refused_upgrades");
        let named = |n: usize| SERIES[n].0;
        assert_eq!(
            [CONNECTIONS, SUBSCRIPTIONS, REDIS_UP, NODES].map(named),
            ["connections", "subscriptions", "redis_up", "cluster_nodes"]
        );
    }

    #[test]
    fn marks_are_bounded_in_number_and_length() {
        let mut history = History::default();
        for n in 0..MAX_MARKS + 10 {
            history.mark("reload", format!("{n} {}", "é".repeat(500)));
        }
        assert_eq!(history.marks.len(), MAX_MARKS);
        assert!(history.marks.iter().all(|m| m.text.len() <= MAX_MARK_TEXT));
        const { assert!(MAX_BYTES < 256 * 1024) };
    }
}
