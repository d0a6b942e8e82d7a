//! When a member campaigns for leadership. openraft decides elections; this decides when
//! a follower starts one, because openraft 0.9 draws a member's election timeout once per
//! process: two survivors whose timeouts happen to be close split the vote round after
//! round (seen as 2–4 s failovers in `scripts/bench-cluster`). Here each wait is drawn
//! afresh, so a split vote is broken at the next round.
//!
//! A member campaigns when it has not heard a current leader (an append or a snapshot it
//! accepted, see [`LeaderContact`]) for the leader's lease plus a fresh random election
//! timeout, and not campaigned itself within that time. Voters still refuse a vote while
//! their own lease on the old leader runs (openraft), so a member cut off alone cannot
//! unseat a healthy leader by campaigning.
//!
//! Before it stands, a member asks the others how long their logs are
//! ([`crate::network::probe_log_lengths`]) and stands aside for a round when one is
//! longer: a majority would refuse it and elect that one, whose own round it would only
//! disturb (openraft's own timer has the same rule; a pre-vote in spirit).
//!
//! A round that elects nobody widens the next wait's range (doubling, up to eight times):
//! a voter refuses every other candidate for a lease after it stood itself, so two
//! members that keep standing within a lease of each other (the one with the shorter
//! log can never win) would otherwise go on for many rounds.
//!
//! A member that was not scheduled for a while (the process was paused, SIGSTOP) first
//! gives the leader a full timeout to reach it again: its view of the leader is stale,
//! not the leader.
//!
//! [`next_wait`] and [`should_campaign`] are pure; [`campaign_loop`] is the shell.

use std::hash::{BuildHasher, Hasher};
use std::ops::Range;
use std::time::{Duration, Instant};

use openraft::{Raft, ServerState};

use crate::network::{LeaderContact, probe_log_lengths};
use crate::types::TypeConfig;

/// How often the loop looks.
const TICK: Duration = Duration::from_millis(20);

/// A wait drawn from `lease + timeout range`, the range's width doubled for each of
/// `failed` rounds in a row that elected nobody (up to eight times), with `seed` as the
/// randomness.
pub fn next_wait(lease: Duration, timeouts: &Range<u64>, failed: u32, seed: u64) -> Duration {
    let span = timeouts.end.saturating_sub(timeouts.start).max(1) << failed.min(3);
    lease + Duration::from_millis(timeouts.start + seed % span)
}

/// Whether a follower that last heard a leader at `contact`, and last campaigned at
/// `campaigned`, campaigns at `now` after waiting `wait`.
pub fn should_campaign(
    now: Instant,
    contact: Instant,
    campaigned: Option<Instant>,
    wait: Duration,
) -> bool {
    now.duration_since(contact) >= wait
        && campaigned.is_none_or(|at| now.duration_since(at) >= wait)
}

/// A random number from the OS-seeded hasher keys.
fn random() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Instant::now().elapsed().as_nanos());
    hasher.finish()
}

/// How long a member about to stand waits for the others' log lengths.
const PROBE_WAIT: Duration = Duration::from_millis(100);

/// What a member needs to campaign.
#[derive(Clone)]
pub struct Campaign {
    /// Its Raft.
    pub raft: Raft<TypeConfig>,
    /// When it last heard a leader.
    pub contact: LeaderContact,
    /// Its Zenoh session, to ask the others' log lengths.
    pub session: zenoh::Session,
    /// The hub, for keys.
    pub hub: String,
    /// The old leader's lease.
    pub lease: Duration,
    /// The election timeouts' range, ms.
    pub timeouts: Range<u64>,
}

impl std::fmt::Debug for Campaign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Campaign")
            .field("hub", &self.hub)
            .field("lease", &self.lease)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

/// Campaigns when [`should_campaign`] says so, until Raft stops.
pub async fn campaign_loop(campaign: Campaign) {
    let Campaign {
        raft,
        contact,
        session,
        hub,
        lease,
        timeouts,
    } = campaign;
    let mut failed = 0;
    let mut wait = next_wait(lease, &timeouts, failed, random());
    let mut campaigned: Option<Instant> = None;
    let mut last_tick = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        if now.duration_since(last_tick) > lease {
            // Not scheduled for longer than a lease: let the leader reach us first.
            contact.touch_at(now);
        }
        last_tick = now;
        let metrics = raft.metrics().borrow().clone();
        if metrics.running_state.is_err() {
            return;
        }
        if metrics.state == ServerState::Leader {
            contact.touch_at(now);
            continue;
        }
        if campaigned.is_some_and(|at| contact.last() > at) {
            // A leader was heard since our last round: the next silence starts afresh.
            failed = 0;
            campaigned = None;
        }
        if !should_campaign(now, contact.last(), campaigned, wait) {
            continue;
        }
        if campaigned.is_some() {
            failed += 1;
        }
        let longest = probe_log_lengths(&session, &hub, PROBE_WAIT)
            .await
            .into_iter()
            .max()
            .flatten();
        if longest > metrics.last_log_index {
            tracing::info!(
                mine = ?metrics.last_log_index,
                ?longest,
                "a member has a longer log: standing aside this round"
            );
        } else {
            tracing::info!(
                term = metrics.current_term,
                waited_ms = wait.as_millis(),
                "no leader heard: campaigning"
            );
            if raft.trigger().elect().await.is_err() {
                return;
            }
        }
        campaigned = Some(now);
        wait = next_wait(lease, &timeouts, failed, random());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(600);

    #[test]
    fn failed_rounds_widen_the_range_up_to_eight_times() {
        let range = 300..600;
        let widest = |failed| {
            (0..10_000)
                .map(|seed| next_wait(LEASE, &range, failed, seed * 7919))
                .max()
                .expect("waits")
        };
        let ms = Duration::from_millis;
        assert!(widest(0) < LEASE + ms(600));
        assert!(widest(1) > LEASE + ms(600) && widest(1) < LEASE + ms(900));
        assert!(widest(3) > LEASE + ms(2_000) && widest(3) < LEASE + ms(2_700));
        assert_eq!(widest(9), widest(3), "capped");
    }

    #[test]
    fn waits_cover_the_whole_range_after_the_lease() {
        let range = 300..600;
        let waits: Vec<Duration> = (0..1_000)
            .map(|seed| next_wait(LEASE, &range, 0, seed * 7919))
            .collect();
        let min = waits.iter().min().copied().expect("waits");
        let max = waits.iter().max().copied().expect("waits");
        assert!(
            min >= LEASE + Duration::from_millis(300) && min < LEASE + Duration::from_millis(320)
        );
        assert!(
            max < LEASE + Duration::from_millis(600) && max > LEASE + Duration::from_millis(580)
        );
    }

    #[test]
    fn a_follower_campaigns_only_after_silence_and_not_twice_within_a_wait() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(1_000);
        let ms = Duration::from_millis;
        assert!(
            !should_campaign(t0 + ms(999), t0, None, wait),
            "heard recently"
        );
        assert!(should_campaign(t0 + ms(1_000), t0, None, wait));
        let campaigned = Some(t0 + ms(1_000));
        assert!(
            !should_campaign(t0 + ms(1_500), t0, campaigned, wait),
            "round running"
        );
        assert!(
            should_campaign(t0 + ms(2_000), t0, campaigned, wait),
            "the next round"
        );
        assert!(
            !should_campaign(t0 + ms(2_000), t0 + ms(1_900), campaigned, wait),
            "a leader spoke"
        );
    }
}
