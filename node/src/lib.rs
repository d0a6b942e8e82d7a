//! The cabinet daemon's library (DESIGN.md §3): what `ringhub-node` and the `ringhub` CLI
//! are built from.
//!
//! - `can`: the CAN transports (SocketCAN, socketcand, candump) behind one trait;
//! - `connector`: the pure per-segment controller and the gun's session state machine;
//! - `runtime`: the daemon that runs the controllers on the bus, with `store` (redb),
//!   `publish` (Zenoh), `metrics` (Prometheus) and `options` (config and flags);
//! - `epochs`: the committed plan carried out on this node's segments, and reported;
//! - `latches`: the controllers' faults carried into the Raft-replicated record;
//! - `stall`: a node that stalled past the Zenoh lease restarts in place;
//! - `admin`: the queryables `ringhub status` and `ringhub faults` ask;
//! - `cli`: the operator CLI's commands.

pub mod admin;
pub mod can;
pub mod cli;
pub mod connector;
pub mod epochs;
pub mod islands;
pub mod latches;
pub mod metrics;
pub mod ocpp;
pub mod options;
pub mod publish;
pub mod runtime;
pub mod stall;
pub mod store;
