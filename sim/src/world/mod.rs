//! The simulated hardware, pure: no clock, no sockets.

pub mod contactor;
pub mod electrical;
pub mod ev;
pub mod module;
