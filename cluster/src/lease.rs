//! A node's lease on its place in the hub (S7). Pure: the node feeds it what it sees on
//! every tick and asks where it stands.
//!
//! Contact with a majority is confirmed when the node sees the liveliness tokens of a
//! majority of the voters (itself included: Zenoh drops a peer's tokens within its 1 s
//! link lease) and, when it is the Raft leader, a quorum acknowledged it within the
//! lease. An election alone does not cost a follower its lease: a node that sees a
//! majority can reach one, and the next leader will be among them. A node whose last confirmation is
//! older than the lease is **degraded**: it must keep its islands to its own cabinet and
//! its own modules. It is **joined** again only after contact has been confirmed
//! continuously for [`REJOIN_AFTER`], so that a view that was stale while the process was
//! paused (SIGSTOP, a long GC-like stall) cannot rejoin it at once.
//!
//! The check comes before the new observation: a node that wakes from a pause longer than
//! the lease is degraded first, whatever its stale view says.

use std::time::{Duration, Instant};

/// How long a node may go without confirmed contact with a majority.
pub const LEASE: Duration = Duration::from_millis(1_500);

/// How long contact must hold before a degraded node is joined again.
pub const REJOIN_AFTER: Duration = Duration::from_millis(1_000);

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// In contact with a majority: it follows the committed plan.
    Joined,
    /// Cut off past its lease: its own cabinet, its own modules.
    Degraded,
}

/// What the node sees at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    /// Voters whose liveliness token is seen, itself included.
    pub alive_voters: usize,
    /// All voters.
    pub voters: usize,
    /// It is the leader, and a quorum acknowledged it this long ago (`None` when it
    /// leads but never heard a quorum).
    pub leader_quorum_ack: Option<Option<Duration>>,
}

impl Contact {
    /// Whether this confirms contact with a majority within `lease`.
    fn confirms(&self, lease: Duration) -> bool {
        let majority = self.alive_voters * 2 > self.voters;
        let quorum = match self.leader_quorum_ack {
            None => true,
            Some(ack) => ack.is_some_and(|age| age < lease),
        };
        majority && quorum
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Lease {
    lease: Duration,
    /// The last moment contact was confirmed.
    confirmed_at: Instant,
    /// Since when contact has been confirmed without a break.
    confirmed_since: Option<Instant>,
    standing: Standing,
}

impl Lease {
    /// A lease starting at `now`, joined: a starting node has its lease to find the others.
    pub fn new(now: Instant, lease: Duration) -> Self {
        Self {
            lease,
            confirmed_at: now,
            confirmed_since: None,
            standing: Standing::Joined,
        }
    }

    /// Takes in what the node sees at `now`; returns the standing when it changed.
    pub fn observe(&mut self, now: Instant, contact: Contact) -> Option<Standing> {
        let before = self.standing;
        if now.duration_since(self.confirmed_at) > self.lease {
            self.standing = Standing::Degraded;
            self.confirmed_since = None;
        }
        if contact.confirms(self.lease) {
            self.confirmed_at = now;
            let since = *self.confirmed_since.get_or_insert(now);
            if self.standing == Standing::Degraded && now.duration_since(since) >= REJOIN_AFTER {
                self.standing = Standing::Joined;
            }
        } else {
            self.confirmed_since = None;
        }
        (self.standing != before).then_some(self.standing)
    }

    /// Where the node stands.
    pub fn standing(&self) -> Standing {
        self.standing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(alive: usize) -> Contact {
        Contact {
            alive_voters: alive,
            voters: 3,
            leader_quorum_ack: None,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_node_that_sees_a_majority_stays_joined() {
        let t0 = Instant::now();
        let mut lease = Lease::new(t0, LEASE);
        for i in 0..100 {
            assert_eq!(lease.observe(t0 + MS * (i * 100), seen(2)), None);
        }
        assert_eq!(lease.standing(), Standing::Joined);
    }

    #[test]
    fn a_node_cut_off_past_its_lease_is_degraded_then_rejoins_after_steady_contact() {
        let t0 = Instant::now();
        let mut lease = Lease::new(t0, LEASE);
        lease.observe(t0, seen(3));
        assert_eq!(lease.observe(t0 + LEASE, seen(1)), None, "not past it yet");
        assert_eq!(
            lease.observe(t0 + LEASE + MS, seen(1)),
            Some(Standing::Degraded)
        );
        let back = t0 + LEASE * 2;
        assert_eq!(
            lease.observe(back, seen(2)),
            None,
            "contact must hold first"
        );
        assert_eq!(lease.observe(back + REJOIN_AFTER / 2, seen(2)), None);
        assert_eq!(
            lease.observe(back + REJOIN_AFTER * 3 / 4, seen(1)),
            None,
            "a break"
        );
        let again = back + REJOIN_AFTER;
        assert_eq!(lease.observe(again, seen(2)), None);
        assert_eq!(
            lease.observe(again + REJOIN_AFTER, seen(2)),
            Some(Standing::Joined)
        );
    }

    #[test]
    fn a_node_waking_from_a_long_pause_is_degraded_whatever_its_stale_view_says() {
        let t0 = Instant::now();
        let mut lease = Lease::new(t0, LEASE);
        lease.observe(t0, seen(3));
        // Paused for 5 s; the first tick after it still sees everyone.
        let woke = t0 + Duration::from_secs(5);
        assert_eq!(lease.observe(woke, seen(3)), Some(Standing::Degraded));
    }

    #[test]
    fn a_leader_without_a_recent_quorum_ack_is_not_confirmed() {
        let t0 = Instant::now();
        let mut lease = Lease::new(t0, LEASE);
        let never_acked = Contact {
            leader_quorum_ack: Some(None),
            ..seen(3)
        };
        let stale_leader = Contact {
            leader_quorum_ack: Some(Some(LEASE * 2)),
            ..seen(3)
        };
        let fresh_leader = Contact {
            leader_quorum_ack: Some(Some(MS * 100)),
            ..seen(3)
        };
        lease.observe(t0 + LEASE, never_acked);
        assert_eq!(
            lease.observe(t0 + LEASE + MS, stale_leader),
            Some(Standing::Degraded)
        );
        let t1 = t0 + LEASE * 2;
        lease.observe(t1, fresh_leader);
        assert_eq!(
            lease.observe(t1 + REJOIN_AFTER, fresh_leader),
            Some(Standing::Joined)
        );
    }
}
