//! The CAN side of the wire: frames, the DBC catalog and the typed message codec.

mod frame;

pub use frame::{CanFrame, CanId, FrameSyntaxError, LogLine, MAX_DATA_LEN};
