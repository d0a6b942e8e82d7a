//! The CAN side of the wire (DESIGN.md §5): frames, the DBC catalog that is the single
//! source of truth for every id and signal, the generic codec over it, and the typed
//! messages the node and the simulator speak.

mod bits;
pub mod catalog;
pub mod dbc;
pub mod ev_identity;
mod frame;
pub mod messages;

pub use catalog::{
    Catalog, CodecError, Decoded, DecodedSignal, FrameWriter, SignalInput, SignalValue, ringhub,
};
pub use frame::{CanFrame, CanId, FrameSyntaxError, LogLine, MAX_DATA_LEN};
pub use messages::{CanMessage, ModuleAddress, ModuleMessage, PlcMessage, PlcSlot};
