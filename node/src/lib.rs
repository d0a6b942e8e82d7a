//! The cabinet daemon's library (DESIGN.md §3): what `ringhub-node` and the `ringhub` CLI
//! are built from. So far: the CAN transports (`can`) and the CLI's commands (`cli`).

pub mod can;
pub mod cli;
