//! A byte budget for what waits in sockets' queues, for the whole process
//! and per client address. Each socket's queue is bounded on its own
//! ([`super::mailbox::MAX_QUEUED_BYTES`]), but one address holding many
//! connections, each a stalled reader fed by a sender of its own (client
//! events on a channel of their own), could make the server hold that
//! bound many times over. Here every queued frame is charged to its
//! socket's address, weighed by how many sockets share it (a frame queued
//! for one socket alone costs its whole size; an event queued for 10 000
//! costs each a ten-thousandth, as it is held once), and when an address
//! or the process is over its budget, the sockets holding the most are
//! dropped (4100) until it is within it again, whoever they claim to be.
//! Honest readers hold next to nothing: their queues drain as they fill.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// Weighed bytes the sockets of one client address may hold queued.
pub const MAX_QUEUED_BYTES_PER_ADDRESS: usize = 4 * 1024 * 1024;
/// Weighed bytes all sockets together may hold queued.
pub const MAX_QUEUED_BYTES_TOTAL: usize = 64 * 1024 * 1024;

/// The process's budget, and the ledgers of the addresses charged to it.
#[derive(Debug)]
pub struct QueueBudget {
    /// Weighed bytes queued in every socket's mailbox.
    total: AtomicUsize,
    max_total: usize,
    max_per_address: usize,
    /// Woken when an address or the process goes over its budget.
    over: Notify,
    /// One ledger per address with open sockets. A leaf lock of the
    /// contract in `hub/mod.rs`: taken only when a session opens.
    ledgers: Mutex<HashMap<IpAddr, Weak<AddressLedger>>>,
}

/// What the sockets of one client address hold queued.
#[derive(Debug)]
pub struct AddressLedger {
    pub ip: IpAddr,
    queued: AtomicUsize,
    budget: Arc<QueueBudget>,
}

impl Default for QueueBudget {
    fn default() -> Self {
        Self::new(MAX_QUEUED_BYTES_TOTAL, MAX_QUEUED_BYTES_PER_ADDRESS)
    }
}

impl QueueBudget {
    /// A budget of `max_total` queued bytes in all and `max_per_address` for
    /// each client address.
    pub fn new(max_total: usize, max_per_address: usize) -> Self {
        Self {
            total: AtomicUsize::new(0),
            max_total,
            max_per_address,
            over: Notify::new(),
            ledgers: Mutex::new(HashMap::new()),
        }
    }

    /// The ledger `ip`'s sockets are charged to (one per address while any
    /// of its sockets is open).
    pub fn ledger(self: &Arc<Self>, ip: IpAddr) -> Arc<AddressLedger> {
        let mut ledgers = self.ledgers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ledger) = ledgers.get(&ip).and_then(Weak::upgrade) {
            return ledger;
        }
        if ledgers.len() >= 1024 && ledgers.len().is_power_of_two() {
            // Forget addresses whose sockets are all gone; at sizes that
            // double, so the sweep costs nothing per session.
            ledgers.retain(|_, ledger| ledger.strong_count() > 0);
        }
        let ledger = Arc::new(AddressLedger {
            ip,
            queued: AtomicUsize::new(0),
            budget: self.clone(),
        });
        ledgers.insert(ip, Arc::downgrade(&ledger));
        ledger
    }

    /// Waits until an address or the process may be over its budget.
    pub async fn exceeded(&self) {
        self.over.notified().await;
    }

    /// Weighed bytes queued now, in all.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

impl AddressLedger {
    /// Weighed bytes this address's sockets hold queued.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    pub(super) fn charge(&self, weight: usize) {
        let address = self.queued.fetch_add(weight, Ordering::Relaxed) + weight;
        let total = self.budget.total.fetch_add(weight, Ordering::Relaxed) + weight;
        if address > self.budget.max_per_address || total > self.budget.max_total {
            self.budget.over.notify_one();
        }
    }

    pub(super) fn release(&self, weight: usize) {
        self.queued.fetch_sub(weight, Ordering::Relaxed);
        self.budget.total.fetch_sub(weight, Ordering::Relaxed);
    }
}

/// What a frame costs the queue of one of `sharers` sockets it is queued to.
pub fn weight(bytes: usize, sharers: usize) -> usize {
    bytes.div_ceil(sharers.max(1))
}

/// The sockets to drop, from `held` (each open socket's address and
/// weighed queued bytes, in any order; sockets already asked to close are
/// left out, so what they still hold is not paid for twice): for each
/// address over its budget, its sockets holding the most until the excess
/// is covered; then, if the process is still over, the sockets holding the
/// most of the rest until that excess is covered. Returns indexes into
/// `held`.
pub fn choose_victims(budget: &QueueBudget, held: &[(IpAddr, usize)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..held.len()).collect();
    order.sort_by(|a, b| held[*b].1.cmp(&held[*a].1));
    let mut by_address: HashMap<IpAddr, usize> = HashMap::new();
    for (ip, bytes) in held {
        *by_address.entry(*ip).or_default() += bytes;
    }
    let total: usize = by_address.values().sum();
    let mut chosen = vec![false; held.len()];
    let mut freed = 0;
    for (ip, queued) in &by_address {
        let mut excess = queued.saturating_sub(budget.max_per_address);
        for &index in order.iter().filter(|&&i| held[i].0 == *ip) {
            if excess == 0 {
                break;
            }
            chosen[index] = true;
            excess = excess.saturating_sub(held[index].1);
            freed += held[index].1;
        }
    }
    let mut excess = total.saturating_sub(budget.max_total).saturating_sub(freed);
    for &index in &order {
        if excess == 0 {
            break;
        }
        if !chosen[index] {
            chosen[index] = true;
            excess = excess.saturating_sub(held[index].1);
        }
    }
    (0..held.len()).filter(|i| chosen[*i]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn an_address_over_its_budget_loses_its_largest_queues_first() {
        let budget = Arc::new(QueueBudget::new(1000, 100));
        let attacker = budget.ledger(ip(1));
        attacker.charge(150);
        let held = [(ip(1), 60), (ip(1), 80), (ip(2), 90), (ip(1), 10)];
        // 150 for ip 1 against 100: its 80 goes; its 60 and 10 stay;
        // ip 2 (90, within its budget) stays.
        assert_eq!(choose_victims(&budget, &held), vec![1]);
    }

    #[test]
    fn a_process_over_its_budget_loses_the_largest_queues_of_anyone() {
        let budget = Arc::new(QueueBudget::new(100, 1000));
        let one = budget.ledger(ip(1));
        let two = budget.ledger(ip(2));
        one.charge(70);
        two.charge(60);
        assert_eq!(budget.total(), 130);
        let held = [(ip(1), 70), (ip(2), 40), (ip(2), 20)];
        assert_eq!(choose_victims(&budget, &held), vec![0]);
        // Once that socket is asked to close it is left out: nothing more goes.
        assert!(choose_victims(&budget, &held[1..]).is_empty());
        one.release(70);
        assert_eq!(budget.total(), 60);
        assert_eq!(two.queued(), 60);
    }

    #[test]
    fn a_shared_frame_weighs_its_share_and_ledgers_are_per_address() {
        assert_eq!(weight(10_000, 1), 10_000);
        assert_eq!(weight(10_000, 3), 3334);
        assert_eq!(weight(10_000, 0), 10_000);
        let budget = Arc::new(QueueBudget::default());
        let a = budget.ledger(ip(1));
        let b = budget.ledger(ip(1));
        assert!(Arc::ptr_eq(&a, &b));
        drop((a, b));
        let c = budget.ledger(ip(1));
        assert_eq!(c.queued(), 0);
    }
}
