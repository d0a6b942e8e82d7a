//! The ring as the search sees it: positions in ring order with what each tie may do,
//! what each segment offers and asks, and what moving each contactor costs against the
//! plan in force; and the way back from the search's choice to a [`Planned`].

use std::collections::{BTreeMap, BTreeSet};

use ringhub_proto::config::{GunId, ModuleId, SegmentId};

use super::fairness::water_fill;
use super::{Planned, PlannedIsland, PlannerInput, TieState};
use crate::record::Watts;

/// What the plan may do with a tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TieRule {
    /// Open or closed, as the plan likes.
    Free,
    /// Always open: not fitted, stuck open, or next to a segment no island may hold.
    Open,
    /// Always closed: welded.
    Closed,
}

/// An energised island the search chose: consecutive ring positions and its gun.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ArcChoice {
    /// Ring positions, in ring order.
    pub positions: Vec<usize>,
    /// The gun it serves.
    pub gun: GunId,
}

/// The search's answer: the energised islands; every other segment is idle, with its free
/// ties left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Choice {
    /// The energised islands.
    pub arcs: Vec<ArcChoice>,
}

/// See the module docs. Indexed by ring position; tie `p` joins `p` and `p + 1`.
#[derive(Debug)]
pub(super) struct Ring<'a> {
    /// The input, for ids.
    pub input: &'a PlannerInput,
    /// How many segments.
    pub n: usize,
    /// The site limit, in watts.
    pub site_limit: u64,
    /// In service and not welded to a segment out of service: may be in an island.
    pub plannable: Vec<bool>,
    /// In service: in some island, if only an idle one.
    pub in_service: Vec<bool>,
    /// What each tie may do.
    pub rule: Vec<TieRule>,
    /// The welded group (segments joined by welded ties) of each position.
    pub group: Vec<usize>,
    /// The active gun on each plannable position: its id and what it could use.
    pub active: Vec<Option<(GunId, u64)>>,
    /// The modules' available power on each plannable position.
    pub power: Vec<u64>,
    /// Contactors that move if the position is idle: its modules connected now, its gun
    /// energised now.
    pub idle_cost: Vec<i64>,
    /// Per position, its available modules' current owners (`None`: disconnected).
    pub owners: Vec<Vec<Option<GunId>>>,
    /// Per tie, 1 if opening it moves it (it is closed now and free).
    pub open_cost: Vec<i64>,
    /// Per tie, 1 if closing it moves it (it is open now and free).
    pub close_cost: Vec<i64>,
}

impl<'a> Ring<'a> {
    /// Prepares `input` for the search.
    pub(super) fn new(input: &'a PlannerInput) -> Self {
        let n = input.segments.len();
        let segments = &input.segments;
        let current = &input.current;
        let in_service: Vec<bool> = segments.iter().map(|s| s.in_service).collect();
        let welded = |p: usize| n > 1 && segments[p].tie_to_next == TieState::WeldedClosed;
        let group = welded_groups(n, welded);
        // A welded group holding a segment out of service is kept out of every plan.
        let tainted: BTreeSet<usize> = (0..n)
            .filter(|&p| !in_service[p])
            .map(|p| group[p])
            .collect();
        let plannable: Vec<bool> = (0..n)
            .map(|p| in_service[p] && !tainted.contains(&group[p]))
            .collect();
        let rule: Vec<TieRule> = (0..n)
            .map(|p| {
                let next = (p + 1) % n;
                match segments[p].tie_to_next {
                    _ if n < 2 => TieRule::Open,
                    TieState::WeldedClosed => TieRule::Closed,
                    TieState::Absent | TieState::StuckOpen => TieRule::Open,
                    TieState::Ok if !plannable[p] || !plannable[next] => TieRule::Open,
                    TieState::Ok => TieRule::Free,
                }
            })
            .collect();
        let active = (0..n)
            .map(|p| {
                let gun = segments[p].gun.filter(|_| plannable[p])?;
                let want = gun.want().0;
                (want > 0).then_some((gun.id, want))
            })
            .collect();
        let power = (0..n)
            .map(|p| {
                let total: u64 = segments[p].modules.iter().map(|m| m.available.0).sum();
                if plannable[p] { total } else { 0 }
            })
            .collect();
        let idle_cost = segments
            .iter()
            .map(|s| {
                let modules = s
                    .modules
                    .iter()
                    .filter(|m| current.owners.contains_key(&m.id));
                let gun = s.gun.is_some_and(|g| current.energised.contains(&g.id));
                modules.count() as i64 + i64::from(gun)
            })
            .collect();
        let owners = segments
            .iter()
            .map(|s| {
                s.modules
                    .iter()
                    .filter(|m| m.available.0 > 0)
                    .map(|m| current.owners.get(&m.id).copied())
                    .collect()
            })
            .collect();
        let free_cost = |closed_now: bool| {
            (0..n)
                .map(|p| {
                    let now = current.closed_ties.contains(&segments[p].id);
                    i64::from(rule[p] == TieRule::Free && now == closed_now)
                })
                .collect::<Vec<i64>>()
        };
        Self {
            input,
            n,
            site_limit: input.site_limit.0,
            open_cost: free_cost(true),
            close_cost: free_cost(false),
            plannable,
            in_service,
            rule,
            group,
            active,
            power,
            idle_cost,
            owners,
        }
    }

    /// Whether `gun` is energised now.
    pub(super) fn energised_now(&self, gun: GunId) -> bool {
        self.input.current.energised.contains(&gun)
    }

    /// The active guns' caps under `choice`, in ring order: what each could draw before
    /// the site limit.
    pub(super) fn caps(&self, choice: &Choice) -> Vec<(GunId, u64)> {
        let mut cap: BTreeMap<GunId, u64> = BTreeMap::new();
        for arc in &choice.arcs {
            let power: u64 = arc.positions.iter().map(|&p| self.power[p]).sum();
            let want = arc
                .positions
                .iter()
                .filter_map(|&p| self.active[p])
                .find(|(gun, _)| *gun == arc.gun)
                .map_or(0, |(_, want)| want);
            cap.insert(arc.gun, want.min(power));
        }
        self.active
            .iter()
            .flatten()
            .map(|(gun, _)| (*gun, cap.get(gun).copied().unwrap_or(0)))
            .collect()
    }

    /// The ties closed under `choice`: inside energised islands, welded ones, and free
    /// ones between idle segments as they are now.
    fn closed_ties(&self, choice: &Choice) -> BTreeSet<usize> {
        let mut in_arc = vec![false; self.n];
        let mut closed = BTreeSet::new();
        for arc in &choice.arcs {
            for &p in &arc.positions {
                in_arc[p] = true;
            }
            closed.extend(arc.positions.windows(2).map(|pair| pair[0]));
        }
        let current = &self.input.current.closed_ties;
        for p in 0..self.n {
            let next = (p + 1) % self.n;
            let idle_pair = !in_arc[p] && !in_arc[next];
            match self.rule[p] {
                TieRule::Closed => {
                    closed.insert(p);
                }
                TieRule::Free if idle_pair && current.contains(&self.input.segments[p].id) => {
                    closed.insert(p);
                }
                _ => {}
            }
        }
        // Idle ties kept as they are could close a loop: open the first free one.
        if closed.len() == self.n
            && self.n > 1
            && let Some(free) = (0..self.n).find(|&p| self.rule[p] == TieRule::Free)
        {
            closed.remove(&free);
        }
        closed
    }

    /// Whether keeping every free tie as it is closes a loop (only possible with no
    /// energised island: one has open ties at its ends).
    pub(super) fn idle_loop(&self) -> bool {
        let current = &self.input.current.closed_ties;
        let closed = |p: usize| match self.rule[p] {
            TieRule::Closed => true,
            TieRule::Free => current.contains(&self.input.segments[p].id),
            TieRule::Open => false,
        };
        self.n > 1 && (0..self.n).all(closed) && self.rule.contains(&TieRule::Free)
    }

    /// The plan `choice` stands for.
    pub(super) fn planned(&self, choice: &Choice) -> Planned {
        let segments = &self.input.segments;
        let closed = self.closed_ties(choice);
        let caps = self.caps(choice);
        let (_, granted) = water_fill(
            &caps.iter().map(|(_, cap)| *cap).collect::<Vec<_>>(),
            self.site_limit,
        );
        let mut grants: BTreeMap<GunId, Watts> = segments
            .iter()
            .filter_map(|s| s.gun.filter(|g| g.want().0 > 0))
            .map(|g| (g.id, Watts(0)))
            .collect();
        for ((gun, _), granted) in caps.iter().zip(granted) {
            grants.insert(*gun, Watts(granted));
        }
        let served: BTreeMap<usize, GunId> = choice
            .arcs
            .iter()
            .map(|arc| (arc.positions[0], arc.gun))
            .collect();
        let islands = self
            .runs(&closed, &self.in_service)
            .into_iter()
            .map(|run| {
                let gun = served.get(&run[0]).copied();
                let modules = match gun {
                    Some(_) => self.connected_modules(&run),
                    None => Vec::new(),
                };
                PlannedIsland {
                    segments: run.iter().map(|&p| segments[p].id).collect(),
                    granted: gun.map_or(Watts(0), |g| grants[&g]),
                    gun,
                    modules,
                }
            })
            .collect::<Vec<_>>();
        let closed_ties: BTreeSet<SegmentId> = closed.iter().map(|&p| segments[p].id).collect();
        let changes = changes(self.input, &closed_ties, &islands);
        Planned {
            islands,
            closed_ties,
            grants,
            changes,
        }
    }

    /// The modules an island over `positions` connects to its gun: every one that can give
    /// something.
    pub(super) fn connected_modules(&self, positions: &[usize]) -> Vec<ModuleId> {
        positions
            .iter()
            .flat_map(|&p| &self.input.segments[p].modules)
            .filter(|m| m.available.0 > 0)
            .map(|m| m.id)
            .collect()
    }

    /// The islands: runs of `member` positions joined by closed ties, in ring order from
    /// the first run that starts at or after position 0.
    pub(super) fn runs(&self, closed: &BTreeSet<usize>, member: &[bool]) -> Vec<Vec<usize>> {
        let n = self.n;
        let joined = |p: usize| closed.contains(&p) && member[p] && member[(p + 1) % n];
        // A run starts where the tie before is not joined; none does on a welded loop.
        let starts: Vec<usize> = (0..n)
            .filter(|&p| member[p] && !joined((p + n - 1) % n))
            .collect();
        if starts.is_empty() {
            let all: Vec<usize> = (0..n).filter(|&p| member[p]).collect();
            return if all.is_empty() {
                Vec::new()
            } else {
                vec![all]
            };
        }
        starts
            .into_iter()
            .map(|start| {
                let mut run = vec![start];
                let mut p = start;
                while joined(p) {
                    p = (p + 1) % n;
                    run.push(p);
                }
                run
            })
            .collect()
    }
}

/// The welded group of each position: positions joined by welded ties share one.
fn welded_groups(n: usize, welded: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut group = vec![0; n];
    // Start after a tie that is not welded, so no group wraps past the start.
    let Some(cut) = (0..n).find(|&p| !welded(p)) else {
        return group; // a welded loop is one group
    };
    let mut id = 0;
    for step in 1..=n {
        let p = (cut + step) % n;
        group[p] = id;
        if !welded(p) {
            id += 1;
        }
    }
    group
}

/// How many contactors `islands` and `closed_ties` move from the plan in force: ties
/// (welded ones never move), module contactors (a module changing hands counts once) and
/// gun contactors.
pub(super) fn changes(
    input: &PlannerInput,
    closed_ties: &BTreeSet<SegmentId>,
    islands: &[PlannedIsland],
) -> u32 {
    let current = &input.current;
    let ties = input
        .segments
        .iter()
        .filter(|s| s.tie_to_next != TieState::WeldedClosed)
        .filter(|s| closed_ties.contains(&s.id) != current.closed_ties.contains(&s.id))
        .count();
    let owners: BTreeMap<ModuleId, GunId> = islands
        .iter()
        .filter_map(|i| i.gun.map(|g| (i, g)))
        .flat_map(|(i, g)| i.modules.iter().map(move |&m| (m, g)))
        .collect();
    let modules = input
        .segments
        .iter()
        .flat_map(|s| &s.modules)
        .filter(|m| owners.get(&m.id) != current.owners.get(&m.id))
        .count();
    let energised: BTreeSet<GunId> = islands.iter().filter_map(|i| i.gun).collect();
    let guns = input
        .segments
        .iter()
        .filter_map(|s| s.gun)
        .filter(|g| energised.contains(&g.id) != current.energised.contains(&g.id))
        .count();
    (ties + modules + guns) as u32
}
