//! The cluster layer (DESIGN.md §3, §4): the Raft-replicated hub record that the cabinets
//! agree on — the ring's state, module ownership by plan epoch, latched faults — and the
//! openraft glue over Zenoh.
//!
//! - `record`: the state machine (pure); `storage`: it and the log in redb;
//!   `network`: Raft RPCs over Zenoh; `transport`: the Zenoh session a node opens;
//!   `service`: the member a node runs;
//! - `demand`: what the guns ask and the modules give, from telemetry (pure);
//!   `conditions`: whether each node's fault conditions hold, from telemetry (pure);
//!   `telemetry`: their Zenoh subscriptions;
//! - `planner`: the island manager's plan: islands, owners and fair grants (pure);
//! - `steward`: what the leader commits on its own (lost cabinets, the plan) (pure);
//!   `isolation`: segments out of service for their latched faults (pure);
//!   `clearing`: latches cleared by their rule, as the leader judges it (pure);
//! - `faults`: the fault catalog;
//! - `campaign`: when a member starts an election;
//! - `lease`: whether a node may still count itself part of the hub (S7) (pure).

pub mod campaign;
pub mod clearing;
pub mod conditions;
pub mod demand;
pub mod faults;
pub mod handover;
pub mod isolation;
pub mod lease;
pub mod network;
pub mod planner;
pub mod record;
pub mod service;
pub mod steward;
pub mod storage;
pub mod telemetry;
pub mod transport;
pub mod types;
