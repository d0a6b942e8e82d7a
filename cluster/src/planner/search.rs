//! The exact search: a dynamic programme over the ring, cut open into a line.
//!
//! A plan is a sequence, in ring order, of *energised arcs* (an island serving one gun,
//! its ties closed, open at both ends) and *idle* segments (no gun served, modules
//! disconnected, free ties left as they are now). Walking the line, the programme keeps
//! at every boundary the best partial plan ending with an arc and the best ending idle,
//! where best is the leximin order of the grants so far, then the fewest contactor moves.
//! That is exact because both orders are kept by adding the same tail to both sides.
//!
//! - **Where the line starts**: after a tie that must stay open, if the ring has one (one
//!   pass). Otherwise at the start of some energised arc: the programme runs once per
//!   candidate start, the first arc pinned to it.
//! - **Zero caps first**: a gun that shares an arc with another, or gets no module, is
//!   granted nothing, which the leximin order ranks first. Call a welded group with an
//!   active gun *powered* if its own modules give something. No best plan puts two
//!   powered groups in one arc (cutting between them serves one more gun and leaves the
//!   other served), nor leaves one idle (serving it alone serves one more gun). So arcs
//!   stop before a second powered group, and the arc holding a powered group starts in
//!   the gap before it: only the starts in the smallest gap between powered groups need
//!   trying (every start, if there is no powered group).
//! - **Site limit**: the first pass finds the best caps; if the limit binds, the second
//!   pass truncates every cap at the water level the first found, so that the fewest
//!   moves are sought among all plans whose grants are as fair (see `fairness`).

use std::cmp::Ordering;

use ringhub_proto::config::GunId;

use super::fairness::{leximin, merged, water_fill};
use super::ring::{ArcChoice, Choice, Ring, TieRule};

/// The best plan for `ring`.
pub(super) fn best(ring: &Ring) -> Choice {
    let any_active = ring.active.iter().any(Option::is_some);
    if !any_active || ring.site_limit == 0 {
        return Choice::default();
    }
    let first = search(ring, None);
    let caps: Vec<u64> = ring.caps(&first).iter().map(|(_, cap)| *cap).collect();
    match water_fill(&caps, ring.site_limit).0 {
        None => first,
        // Nothing can be granted: every gun idle.
        Some(0) => Choice::default(),
        Some(level) => search(ring, Some(level)),
    }
}

/// One pass with every cap truncated at `level`.
fn search(ring: &Ring, level: Option<u64>) -> Choice {
    let n = ring.n;
    let pass = Pass {
        ring,
        level,
        powered: powered_groups(ring),
    };
    if let Some(cut) = (0..n).find(|&p| ring.rule[p] == TieRule::Open) {
        let start = (cut + 1) % n;
        return pass
            .line(start, false)
            .map(|s| s.choice)
            .unwrap_or_default();
    }
    // No tie must stay open: every position is plannable. The all-idle plan competes with
    // every plan that has an arc, found by pinning an arc's start.
    let mut best = pass.all_idle();
    let mut starts = pass.starts();
    if starts.is_empty() {
        // Every tie welded: the whole ring is one island.
        starts.push(0);
    }
    for start in starts {
        if let Some(found) = pass.line(start, true)
            && found.beats(&best)
        {
            best = found;
        }
    }
    best.choice
}

/// Per position, whether its welded group is powered: it has an active gun and modules
/// that give something.
fn powered_groups(ring: &Ring) -> Vec<bool> {
    let mut power = vec![0u64; ring.n];
    let mut active = vec![false; ring.n];
    for p in 0..ring.n {
        power[ring.group[p]] += ring.power[p];
        active[ring.group[p]] |= ring.active[p].is_some();
    }
    (0..ring.n)
        .map(|p| active[ring.group[p]] && power[ring.group[p]] > 0)
        .collect()
}

/// A finished candidate plan.
struct Found {
    grants: Vec<u64>,
    cost: i64,
    choice: Choice,
}

impl Found {
    fn beats(&self, other: &Found) -> bool {
        match leximin(self.grants.iter().copied(), other.grants.iter().copied()) {
            Ordering::Greater => true,
            Ordering::Equal => self.cost < other.cost,
            Ordering::Less => false,
        }
    }
}

/// How a partial plan ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Nothing yet (the line's start).
    Start,
    /// An energised arc.
    Arc,
    /// An idle segment.
    Idle,
}

/// The step that made a state.
#[derive(Debug, Clone, Copy)]
enum Step {
    Start,
    Idle {
        from: Kind,
    },
    Arc {
        from: Kind,
        start: usize,
        gun: GunId,
    },
}

/// The best partial plan up to a boundary.
#[derive(Debug, Clone)]
struct State {
    /// Its grants (caps, truncated), ascending.
    grants: Vec<u64>,
    /// Contactor moves that depend on the choices made.
    cost: i64,
    /// How it was reached.
    step: Step,
}

/// The states at one boundary, one per [`Kind`].
#[derive(Debug, Clone, Default)]
struct Boundary {
    start: Option<State>,
    arc: Option<State>,
    idle: Option<State>,
}

impl Boundary {
    fn get(&self, kind: Kind) -> Option<&State> {
        match kind {
            Kind::Start => self.start.as_ref(),
            Kind::Arc => self.arc.as_ref(),
            Kind::Idle => self.idle.as_ref(),
        }
    }

    fn slot(&mut self, kind: Kind) -> &mut Option<State> {
        match kind {
            Kind::Start => &mut self.start,
            Kind::Arc => &mut self.arc,
            Kind::Idle => &mut self.idle,
        }
    }
}

/// Puts `base + extra` at `slot` if it beats what is there.
fn offer(slot: &mut Option<State>, base: &State, extra: &[u64], cost: i64, step: Step) {
    let better = match slot {
        None => true,
        Some(held) => match leximin(merged(&base.grants, extra), held.grants.iter().copied()) {
            Ordering::Greater => true,
            Ordering::Equal => cost < held.cost,
            Ordering::Less => false,
        },
    };
    if better {
        *slot = Some(State {
            grants: merged(&base.grants, extra).collect(),
            cost,
            step,
        });
    }
}

/// An energised arc on the way to being extended: what it holds so far.
#[derive(Debug, Default)]
struct ArcSoFar {
    /// Available module power.
    power: u64,
    /// Its active guns and what each could use.
    guns: Vec<(GunId, u64)>,
    /// How many powered groups it spans.
    powered: usize,
    /// The last of them.
    last_powered: Option<usize>,
    /// Its positions' idle costs, summed.
    idle_cost: i64,
    /// Its inner ties' closing costs, summed.
    tie_cost: i64,
    /// Its available modules.
    modules: i64,
    /// Of those, the ones connected now.
    owned: i64,
    /// Of those, per gun, the ones that gun holds now.
    owned_by: Vec<(GunId, i64)>,
}

/// One pass of the search.
struct Pass<'r, 'a> {
    ring: &'r Ring<'a>,
    /// Caps are truncated here (the water level of the best caps), if set.
    level: Option<u64>,
    /// Per position, whether its welded group is powered.
    powered: Vec<bool>,
}

impl Pass<'_, '_> {
    /// The plan with every segment idle.
    fn all_idle(&self) -> Found {
        let ring = self.ring;
        Found {
            grants: vec![0; ring.active.iter().flatten().count()],
            cost: ring.idle_cost.iter().sum::<i64>() + i64::from(ring.idle_loop()),
            choice: Choice::default(),
        }
    }

    /// The positions where the line may start in a ring with no tie that must stay open:
    /// where an energised arc may start (its tie before is not welded); with powered
    /// groups, only those in the smallest gap between two, up to the first segment of
    /// the group after it (that group's arc starts there).
    fn starts(&self) -> Vec<usize> {
        let ring = self.ring;
        let n = ring.n;
        let may_start = |p: usize| ring.rule[(p + n - 1) % n] != TieRule::Closed;
        let all: Vec<usize> = (0..n).filter(|&p| may_start(p)).collect();
        // Walk twice around from a group boundary, collecting the gap before each
        // powered group.
        let Some(&origin) = all.first() else {
            return Vec::new();
        };
        let mut best: Option<Vec<usize>> = None;
        let mut gap: Vec<usize> = Vec::new();
        let mut seen_powered = false;
        for step in 0..2 * n {
            let p = (origin + step) % n;
            if !self.powered[p] {
                if may_start(p) {
                    gap.push(p);
                }
                continue;
            }
            if may_start(p) {
                // The first segment of a powered group closes the gap before it.
                gap.push(p);
                if seen_powered && best.as_ref().is_none_or(|b| gap.len() < b.len()) {
                    best = Some(gap.clone());
                }
                seen_powered = true;
            }
            gap.clear();
        }
        best.unwrap_or(all)
    }

    /// The best plan on the line that starts at ring position `start` and goes once
    /// around. `pinned`: the ring has no tie that must stay open, and an energised arc
    /// starts at `start`; otherwise the tie before `start` must stay open.
    fn line(&self, start: usize, pinned: bool) -> Option<Found> {
        let ring = self.ring;
        let n = ring.n;
        let at = |i: usize| (start + i) % n;
        // Whether an active gun lies at or after each boundary: no arc starts past the last.
        let mut active_ahead = vec![false; n + 1];
        for i in (0..n).rev() {
            active_ahead[i] = active_ahead[i + 1] || ring.active[at(i)].is_some();
        }
        let mut bounds: Vec<Boundary> = vec![Boundary::default(); n + 1];
        bounds[0].start = Some(State {
            grants: Vec::new(),
            cost: 0,
            step: Step::Start,
        });
        for b in 0..n {
            for kind in [Kind::Start, Kind::Arc, Kind::Idle] {
                // Moved out while its successors are offered, then put back: only its
                // step is read again (by `trace`), never its grants.
                let Some(state) = bounds[b].slot(kind).take() else {
                    continue;
                };
                if !(pinned && kind == Kind::Start) {
                    let p = at(b);
                    let extra: &[u64] = if ring.active[p].is_some() { &[0] } else { &[] };
                    let cost = state.cost + ring.idle_cost[p];
                    offer(
                        bounds[b + 1].slot(Kind::Idle),
                        &state,
                        extra,
                        cost,
                        Step::Idle { from: kind },
                    );
                }
                if active_ahead[b] {
                    self.arcs_from(b, kind, &state, pinned, &mut bounds, &at);
                }
                *bounds[b].slot(kind) = Some(State {
                    grants: Vec::new(),
                    ..state
                });
            }
        }
        let end = &bounds[n];
        let wrap = ring.open_cost[at(n - 1)];
        let mut candidates = Vec::new();
        if let Some(state) = &end.arc {
            candidates.push((Kind::Arc, state.cost));
        }
        if let Some(state) = &end.idle {
            // On a pinned line an arc starts after the last segment: its tie opens.
            candidates.push((Kind::Idle, state.cost + if pinned { wrap } else { 0 }));
        }
        let mut best: Option<(Kind, i64)> = None;
        for (kind, cost) in candidates {
            let state = end.get(kind)?;
            let better = match best {
                None => true,
                Some((held, held_cost)) => {
                    let held_grants = &end.get(held)?.grants;
                    match leximin(state.grants.iter().copied(), held_grants.iter().copied()) {
                        Ordering::Greater => true,
                        Ordering::Equal => cost < held_cost,
                        Ordering::Less => false,
                    }
                }
            };
            if better {
                best = Some((kind, cost));
            }
        }
        let (kind, cost) = best?;
        let grants = end.get(kind)?.grants.clone();
        Some(Found {
            grants,
            cost,
            choice: Choice {
                arcs: self.trace(&bounds, kind, &at),
            },
        })
    }

    /// Offers every energised arc that starts at boundary `b` after a partial plan of
    /// `kind`.
    fn arcs_from(
        &self,
        b: usize,
        kind: Kind,
        state: &State,
        pinned: bool,
        bounds: &mut [Boundary],
        at: &impl Fn(usize) -> usize,
    ) {
        let ring = self.ring;
        let n = ring.n;
        if pinned && b > 0 && kind == Kind::Start {
            return;
        }
        let before = at(b + n - 1);
        // An arc cannot start on the far side of a welded tie from an idle segment.
        if kind == Kind::Idle && ring.rule[before] == TieRule::Closed {
            return;
        }
        // Its tie before opens, paid here unless an arc before it paid it.
        let entry = if kind == Kind::Idle {
            ring.open_cost[before]
        } else {
            0
        };
        let mut arc = ArcSoFar::default();
        for y in b..n {
            let p = at(y);
            if !ring.plannable[p] || (y > b && ring.rule[at(y - 1)] == TieRule::Open) {
                return;
            }
            if y > b {
                arc.tie_cost += ring.close_cost[at(y - 1)];
            }
            self.extend(&mut arc, p);
            if arc.powered > 1 {
                return;
            }
            // It may end here unless its tie after is welded.
            let after = p;
            if arc.guns.is_empty() || (y + 1 < n && ring.rule[after] == TieRule::Closed) {
                continue;
            }
            let Some((extra, gun, arc_cost)) = self.value(&arc) else {
                continue;
            };
            let cost = state.cost + entry + arc_cost + ring.open_cost[after];
            offer(
                bounds[y + 1].slot(Kind::Arc),
                state,
                &extra,
                cost,
                Step::Arc {
                    from: kind,
                    start: b,
                    gun,
                },
            );
        }
    }

    /// Adds position `p` to `arc`.
    fn extend(&self, arc: &mut ArcSoFar, p: usize) {
        let ring = self.ring;
        arc.power += ring.power[p];
        arc.idle_cost += ring.idle_cost[p];
        if let Some(active) = ring.active[p] {
            arc.guns.push(active);
        }
        if self.powered[p] && arc.last_powered != Some(ring.group[p]) {
            arc.powered += 1;
            arc.last_powered = Some(ring.group[p]);
        }
        for owner in &ring.owners[p] {
            arc.modules += 1;
            if let Some(gun) = owner {
                arc.owned += 1;
                match arc.owned_by.iter_mut().find(|(g, _)| g == gun) {
                    Some((_, count)) => *count += 1,
                    None => arc.owned_by.push((*gun, 1)),
                }
            }
        }
    }

    /// What `arc` adds if energised: its grants (ascending), the gun it serves and its
    /// contactor moves (without its end ties). `None` if no gun can draw from it.
    fn value(&self, arc: &ArcSoFar) -> Option<(Vec<u64>, GunId, i64)> {
        let cap = |want: u64| {
            let cap = want.min(arc.power);
            self.level.map_or(cap, |level| cap.min(level))
        };
        let best = arc.guns.iter().map(|&(_, want)| cap(want)).max()?;
        if best == 0 {
            return None;
        }
        let (gun, cost) = arc
            .guns
            .iter()
            .filter(|&&(_, want)| cap(want) == best)
            .map(|&(gun, _)| {
                let held = arc
                    .owned_by
                    .iter()
                    .find(|(g, _)| *g == gun)
                    .map_or(0, |c| c.1);
                let gun_move = if self.ring.energised_now(gun) { -1 } else { 1 };
                let cost =
                    arc.tie_cost + arc.idle_cost + (arc.modules - held - arc.owned) + gun_move;
                (gun, cost)
            })
            .min_by_key(|&(_, cost)| cost)?;
        let mut extra = vec![0; arc.guns.len() - 1];
        extra.push(best);
        Some((extra, gun, cost))
    }

    /// The energised arcs of the best state of `kind` at the line's end, in ring
    /// positions.
    fn trace(
        &self,
        bounds: &[Boundary],
        mut kind: Kind,
        at: &impl Fn(usize) -> usize,
    ) -> Vec<ArcChoice> {
        let mut arcs = Vec::new();
        let mut b = self.ring.n;
        while let Some(state) = bounds[b].get(kind) {
            match state.step {
                Step::Start => break,
                Step::Idle { from } => {
                    b -= 1;
                    kind = from;
                }
                Step::Arc { from, start, gun } => {
                    arcs.push(ArcChoice {
                        positions: (start..b).map(at).collect(),
                        gun,
                    });
                    b = start;
                    kind = from;
                }
            }
        }
        arcs.reverse();
        arcs
    }
}
