//! Every wire format of ringhub (DESIGN.md §5): the CAN frame catalog with its codec
//! (`can`), and the protobuf messages carried on Zenoh (`v1`). Pure: no IO, no async.

pub mod can;
pub mod config;
pub mod socketcand;
pub mod units;
pub mod v1;
