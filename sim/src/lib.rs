//! The virtual hub (DESIGN.md §3): one process that is the whole hub's hardware. It
//! serves each cabinet's CAN bus over socketcand with the exact frames of
//! `proto/can/ringhub.dbc`, and referees the physical safety invariants on its ground
//! truth.
//!
//! `world` is the pure core: ring physics, contactors, power modules, PLC firmware, EVs
//! and the referee, all stepped with the time as an argument.

pub mod server;
pub mod world;
