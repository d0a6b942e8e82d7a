//! The `ringhub` operator CLI: one module per command group.

pub mod can;
pub mod demo;
pub mod node;
pub mod plan;
pub mod status;
