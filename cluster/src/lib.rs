//! The cluster layer (DESIGN.md §3, §4): the Raft-replicated hub record that the cabinets
//! agree on — the ring's state, module ownership by plan epoch, latched faults — and,
//! next, the openraft glue over Zenoh and the island manager and planner.

pub mod network;
pub mod record;
pub mod service;
pub mod storage;
pub mod types;
