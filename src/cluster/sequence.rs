//! Which of another node's numbered events this node has had. Each node
//! numbers its events 1, 2, 3… and publishes them in that order; a gap
//! means some never arrived (one side's Redis link was down), and the node
//! is asked for them again. What arrives twice (published again after a
//! timeout that Redis had in fact carried out, or replayed for a node that
//! missed it) is delivered once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Gaps remembered per node at most; past it the oldest is given up.
const MAX_GAPS: usize = 1024;

/// Numbers `from..=to`, missing since `since`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Gap {
    from: u64,
    to: u64,
    since: Instant,
}

impl Gap {
    fn len(&self) -> u64 {
        self.to - self.from + 1
    }
}

/// What became of an event that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Deliver it.
    New,
    /// Deliver it; the numbers from `missing_from` up to it never came.
    AfterGap { missing_from: u64 },
    /// Had already: do not deliver it again.
    Duplicate,
}

/// One node's numbered events as seen here.
#[derive(Debug)]
pub struct Sequence {
    /// The number expected next.
    next: u64,
    /// Missing numbers below `next`, oldest first, not overlapping.
    gaps: VecDeque<Gap>,
    /// Numbers given up on (too many gaps) not yet reported.
    lost: u64,
}

impl Sequence {
    /// The sequence of a node first heard from with event `seq`: what it
    /// sent before is not this node's to miss.
    pub fn starting_at(seq: u64) -> Self {
        Self {
            next: seq + 1,
            gaps: VecDeque::new(),
            lost: 0,
        }
    }

    pub fn arrive(&mut self, seq: u64, now: Instant) -> Arrival {
        if seq == self.next {
            self.next += 1;
            return Arrival::New;
        }
        if seq > self.next {
            let missing_from = self.next;
            self.gaps.push_back(Gap {
                from: missing_from,
                to: seq - 1,
                since: now,
            });
            if self.gaps.len() > MAX_GAPS
                && let Some(oldest) = self.gaps.pop_front()
            {
                self.lost += oldest.len();
            }
            self.next = seq + 1;
            return Arrival::AfterGap { missing_from };
        }
        let Some(index) = self
            .gaps
            .iter()
            .position(|gap| (gap.from..=gap.to).contains(&seq))
        else {
            return Arrival::Duplicate;
        };
        let gap = self.gaps[index];
        match (seq == gap.from, seq == gap.to) {
            (true, true) => {
                self.gaps.remove(index);
            }
            (true, false) => self.gaps[index].from += 1,
            (false, true) => self.gaps[index].to -= 1,
            (false, false) => {
                self.gaps[index].to = seq - 1;
                self.gaps.insert(
                    index + 1,
                    Gap {
                        from: seq + 1,
                        to: gap.to,
                        since: gap.since,
                    },
                );
            }
        }
        Arrival::New
    }

    /// The lowest number not had: where a replay for this node must start.
    pub fn lowest_missing(&self) -> u64 {
        self.gaps.front().map_or(self.next, |gap| gap.from)
    }

    /// Gives up on gaps open for longer than `window` (the sender no longer
    /// holds them); returns how many events were given up on since the
    /// last call (these and any pushed out by too many gaps).
    pub fn give_up_older_than(&mut self, window: Duration, now: Instant) -> u64 {
        while let Some(oldest) = self.gaps.front()
            && now.duration_since(oldest.since) > window
        {
            self.lost += oldest.len();
            self.gaps.pop_front();
        }
        std::mem::take(&mut self.lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_is_new_and_again_is_a_duplicate() {
        let now = Instant::now();
        let mut seen = Sequence::starting_at(7);
        assert_eq!(seen.arrive(8, now), Arrival::New);
        assert_eq!(seen.arrive(8, now), Arrival::Duplicate);
        assert_eq!(seen.arrive(3, now), Arrival::Duplicate, "before the start");
        assert_eq!(seen.lowest_missing(), 9);
    }

    #[test]
    fn a_gap_is_filled_by_a_replay_in_any_order_once() {
        let now = Instant::now();
        let mut seen = Sequence::starting_at(1);
        assert_eq!(seen.arrive(6, now), Arrival::AfterGap { missing_from: 2 });
        assert_eq!(seen.lowest_missing(), 2);
        // The replay: 2..=6 again, 6 already had.
        for seq in [4, 2, 5, 3] {
            assert_eq!(seen.arrive(seq, now), Arrival::New, "{seq}");
        }
        for seq in 2..=6 {
            assert_eq!(seen.arrive(seq, now), Arrival::Duplicate, "{seq}");
        }
        assert_eq!(seen.lowest_missing(), 7);
        assert_eq!(seen.give_up_older_than(Duration::ZERO, now), 0);
    }

    #[test]
    fn a_gap_never_filled_is_counted_lost_after_the_window() {
        let start = Instant::now();
        let mut seen = Sequence::starting_at(1);
        seen.arrive(5, start);
        seen.arrive(3, start);
        let window = Duration::from_secs(60);
        assert_eq!(seen.give_up_older_than(window, start), 0);
        let later = start + Duration::from_secs(61);
        assert_eq!(seen.give_up_older_than(window, later), 2, "2 and 4");
        assert_eq!(seen.give_up_older_than(window, later), 0, "told once");
        assert_eq!(seen.lowest_missing(), 6);
    }
}
