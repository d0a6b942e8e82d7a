//! Typed CAN messages over the catalog: what the node and the simulator speak.
//!
//! Each message is a struct with typed fields (units, enums, masks) that reads and writes
//! itself through the catalog by signal name, so the layout lives only in the DBC.
//! [`CanMessage::decode`] validates a frame (id, DLC, reserved values, ranges) before any
//! typed field is read; [`CanMessage::encode`] refuses values the DBC does not allow.

mod enums;
mod module;
mod plc;

pub use enums::*;
pub use module::{ModuleEnable, ModuleFaults, ModuleSetpoint, ModuleStatus};
pub use plc::{
    ChargeInfo, ConfigWrite, Contactors, EMAID_CHARS_PER_FRAME, EMAID_MAX_LEN, EvIdentityFrame,
    EvIdentityPart, EvseLimits, EvsePresent, HostHeartbeat, MacAddress, Meter, PlcHeartbeat,
    RelayCommand, RelayFeedback, RfidRead, RfidUid, Session, TieFeedback,
};

use super::catalog::{self, CodecError, Decoded, FrameWriter};
use super::frame::CanFrame;

/// A message that reads and writes itself through the catalog.
pub(crate) trait Payload: Sized {
    /// The DBC message name.
    const NAME: &'static str;
    /// Sets every signal of the message.
    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError>;
    /// Reads every signal of a validated frame.
    fn read(d: &Decoded<'_>) -> Result<Self, CodecError>;
}

/// Reads an enumerated signal.
pub(crate) fn enum_of<T: DbcEnum>(d: &Decoded<'_>, name: &str) -> Result<T, CodecError> {
    let raw = d.raw(name)?;
    T::from_raw(raw).ok_or_else(|| CodecError::ReservedValue {
        message: d.message.name.clone(),
        signal: name.to_owned(),
        raw,
    })
}

/// The slot of a PLC board on its cabinet's bus: the low 4 bits of its frame ids.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct PlcSlot(u8);

impl PlcSlot {
    /// Slots per bus.
    pub const COUNT: u8 = 16;

    /// A slot, or `None` if it exceeds 15.
    pub fn new(slot: u8) -> Option<Self> {
        (slot < Self::COUNT).then_some(Self(slot))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// The address of a power module on its cabinet's bus: the low 8 bits of its frame ids.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct ModuleAddress(pub u8);

/// A message for or from a PLC board.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlcMessage {
    RelayCommand(RelayCommand),
    HostHeartbeat(HostHeartbeat),
    ConfigWrite(ConfigWrite),
    EvseLimits(EvseLimits),
    EvsePresent(EvsePresent),
    RelayFeedback(RelayFeedback),
    TieFeedback(TieFeedback),
    ChargeInfo(ChargeInfo),
    Session(Session),
    Meter(Meter),
    PlcHeartbeat(PlcHeartbeat),
    EvIdentity(EvIdentityFrame),
    RfidRead(RfidRead),
}

/// A message for or from a power module.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ModuleMessage {
    Setpoint(ModuleSetpoint),
    Enable(ModuleEnable),
    Status(ModuleStatus),
    Faults(ModuleFaults),
}

/// Any frame of the catalog, with the device it addresses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CanMessage {
    /// A PLC frame and the slot of its board.
    Plc { slot: PlcSlot, message: PlcMessage },
    /// A power module frame and the module's address.
    Module {
        address: ModuleAddress,
        message: ModuleMessage,
    },
}

fn write<M: Payload>(message: &M, address: u8) -> Result<CanFrame, CodecError> {
    let mut writer = FrameWriter::new(catalog::ringhub().message(M::NAME)?, address.into())?;
    message.write(&mut writer)?;
    Ok(writer.finish())
}

impl CanMessage {
    /// Decodes and validates a frame.
    pub fn decode(frame: &CanFrame) -> Result<Self, CodecError> {
        let d = catalog::ringhub().decode(frame)?;
        let plc = |message| PlcSlot::new(d.address).map(|slot| Self::Plc { slot, message });
        let module = |message| Self::Module {
            address: ModuleAddress(d.address),
            message,
        };
        let decoded = match d.message.name.as_str() {
            RelayCommand::NAME => plc(PlcMessage::RelayCommand(Payload::read(&d)?)),
            HostHeartbeat::NAME => plc(PlcMessage::HostHeartbeat(Payload::read(&d)?)),
            ConfigWrite::NAME => plc(PlcMessage::ConfigWrite(Payload::read(&d)?)),
            EvseLimits::NAME => plc(PlcMessage::EvseLimits(Payload::read(&d)?)),
            EvsePresent::NAME => plc(PlcMessage::EvsePresent(Payload::read(&d)?)),
            RelayFeedback::NAME => plc(PlcMessage::RelayFeedback(Payload::read(&d)?)),
            TieFeedback::NAME => plc(PlcMessage::TieFeedback(Payload::read(&d)?)),
            ChargeInfo::NAME => plc(PlcMessage::ChargeInfo(Payload::read(&d)?)),
            Session::NAME => plc(PlcMessage::Session(Payload::read(&d)?)),
            Meter::NAME => plc(PlcMessage::Meter(Payload::read(&d)?)),
            PlcHeartbeat::NAME => plc(PlcMessage::PlcHeartbeat(Payload::read(&d)?)),
            EvIdentityFrame::NAME => plc(PlcMessage::EvIdentity(Payload::read(&d)?)),
            RfidRead::NAME => plc(PlcMessage::RfidRead(Payload::read(&d)?)),
            ModuleSetpoint::NAME => Some(module(ModuleMessage::Setpoint(Payload::read(&d)?))),
            ModuleEnable::NAME => Some(module(ModuleMessage::Enable(Payload::read(&d)?))),
            ModuleStatus::NAME => Some(module(ModuleMessage::Status(Payload::read(&d)?))),
            ModuleFaults::NAME => Some(module(ModuleMessage::Faults(Payload::read(&d)?))),
            _ => None,
        };
        // Only a catalog without a typed message, or a PLC message with more than 4
        // address bits, gets here: both are defects of the DBC, reported as unknown.
        decoded.ok_or(CodecError::UnknownId { id: frame.id() })
    }

    /// Encodes the message, refusing values the DBC does not allow.
    pub fn encode(&self) -> Result<CanFrame, CodecError> {
        match self {
            Self::Plc { slot, message } => {
                let slot = slot.get();
                match message {
                    PlcMessage::RelayCommand(m) => write(m, slot),
                    PlcMessage::HostHeartbeat(m) => write(m, slot),
                    PlcMessage::ConfigWrite(m) => write(m, slot),
                    PlcMessage::EvseLimits(m) => write(m, slot),
                    PlcMessage::EvsePresent(m) => write(m, slot),
                    PlcMessage::RelayFeedback(m) => write(m, slot),
                    PlcMessage::TieFeedback(m) => write(m, slot),
                    PlcMessage::ChargeInfo(m) => write(m, slot),
                    PlcMessage::Session(m) => write(m, slot),
                    PlcMessage::Meter(m) => write(m, slot),
                    PlcMessage::PlcHeartbeat(m) => write(m, slot),
                    PlcMessage::EvIdentity(m) => write(m, slot),
                    PlcMessage::RfidRead(m) => write(m, slot),
                }
            }
            Self::Module { address, message } => match message {
                ModuleMessage::Setpoint(m) => write(m, address.0),
                ModuleMessage::Enable(m) => write(m, address.0),
                ModuleMessage::Status(m) => write(m, address.0),
                ModuleMessage::Faults(m) => write(m, address.0),
            },
        }
    }
}

#[cfg(test)]
mod tests;
