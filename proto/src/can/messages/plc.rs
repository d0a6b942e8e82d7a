//! Frames between the host and the PLC board of a segment (DESIGN.md §5).
//!
//! Host → PLC: [`RelayCommand`], [`HostHeartbeat`], [`ConfigWrite`], [`EvseLimits`],
//! [`EvsePresent`]. PLC → host: [`RelayFeedback`], [`TieFeedback`], [`ChargeInfo`],
//! [`Session`], [`Meter`], [`PlcHeartbeat`], [`EvIdentityFrame`], [`RfidRead`].

use std::fmt;

use super::enums::*;
use super::{Payload, enum_of};
use crate::can::catalog::{CodecError, Decoded, FrameWriter};
use crate::units::{Amps, Celsius, KilowattHours, Kilowatts, Percent, Volts};

/// Contactors of one segment as bit masks: bit i of `modules` is the segment's module i.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Contactors {
    /// Gun contactors (GC); bit 0 is the segment's gun.
    pub gun: u8,
    /// Module contactors (MC).
    pub modules: u8,
    /// Tie contactors (MN); bit 0 is the tie to the next segment around the ring.
    pub ties: u8,
}

/// Desired contactor state of a segment; the PLC answers with [`RelayFeedback`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelayCommand {
    /// Changes on every new command; echoed as `ack_sequence`.
    pub sequence: u8,
    /// Contactors to close; all others open.
    pub closed: Contactors,
    /// Open now even under load (an S4 emergency action).
    pub emergency: bool,
}

impl Payload for RelayCommand {
    const NAME: &'static str = "RelayCommand";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set("Sequence", self.sequence.into())?
            .set("GcMask", self.closed.gun.into())?
            .set("McMask", self.closed.modules.into())?
            .set("MnMask", self.closed.ties.into())?
            .set_flag("Emergency", self.emergency)?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            sequence: d.int("Sequence")?,
            closed: Contactors {
                gun: d.int("GcMask")?,
                modules: d.int("McMask")?,
                ties: d.int("MnMask")?,
            },
            emergency: d.flag("Emergency")?,
        })
    }
}

/// The host's alive signal; the PLC's watchdog opens everything when it stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostHeartbeat {
    /// Incremented every frame.
    pub counter: u8,
    /// What the host is doing.
    pub state: HostState,
    /// Silence after which the PLC opens its contactors, in milliseconds.
    pub watchdog_timeout_ms: u16,
}

impl Payload for HostHeartbeat {
    const NAME: &'static str = "HostHeartbeat";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set("Counter", self.counter.into())?
            .set_enum("HostState", self.state)?
            .set("WatchdogTimeout", self.watchdog_timeout_ms.into())?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            counter: d.int("Counter")?,
            state: enum_of(d, "HostState")?,
            watchdog_timeout_ms: d.int("WatchdogTimeout")?,
        })
    }
}

/// One PLC configuration parameter write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigWrite {
    /// Param 20: the authorisation decision.
    AuthGranted(AuthStatus),
    /// Param 30: the connector lock.
    Lock(LockCommand),
}

impl Payload for ConfigWrite {
    const NAME: &'static str = "ConfigWrite";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        match *self {
            Self::AuthGranted(status) => w
                .set_enum("ParamId", ParamId::AuthGranted)?
                .set_enum("AuthGranted", status)?,
            Self::Lock(command) => w
                .set_enum("ParamId", ParamId::Lock)?
                .set_enum("LockCommand", command)?,
        };
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(match enum_of(d, "ParamId")? {
            ParamId::AuthGranted => Self::AuthGranted(enum_of(d, "AuthGranted")?),
            ParamId::Lock => Self::Lock(enum_of(d, "LockCommand")?),
        })
    }
}

/// EVSE ratings the PLC passes to the EV.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvseLimits {
    /// Highest output voltage available now.
    pub max_voltage: Volts,
    /// Highest output current available now (the gun's share of the island).
    pub max_current: Amps,
    /// Power budget granted by the plan.
    pub max_power: Kilowatts,
    /// Lowest output voltage the modules regulate.
    pub min_voltage: Volts,
}

impl Payload for EvseLimits {
    const NAME: &'static str = "EvseLimits";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set("MaxVoltage", self.max_voltage.0)?
            .set("MaxCurrent", self.max_current.0)?
            .set("MaxPower", self.max_power.0)?
            .set("MinVoltage", self.min_voltage.0)?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            max_voltage: Volts(d.physical("MaxVoltage")?),
            max_current: Amps(d.physical("MaxCurrent")?),
            max_power: Kilowatts(d.physical("MaxPower")?),
            min_voltage: Volts(d.physical("MinVoltage")?),
        })
    }
}

/// EVSE present output the PLC reports to the EV.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvsePresent {
    /// Output voltage at the gun.
    pub voltage: Volts,
    /// Output current at the gun.
    pub current: Amps,
    /// The EV asks for more current than the EVSE gives.
    pub current_limit_achieved: bool,
    /// The EV asks for more voltage than the EVSE gives.
    pub voltage_limit_achieved: bool,
    /// The power budget caps the output.
    pub power_limit_achieved: bool,
    /// Asks the EV to stop charging.
    pub stop_requested: bool,
}

impl Payload for EvsePresent {
    const NAME: &'static str = "EvsePresent";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set("PresentVoltage", self.voltage.0)?
            .set("PresentCurrent", self.current.0)?
            .set_flag("CurrentLimitAchieved", self.current_limit_achieved)?
            .set_flag("VoltageLimitAchieved", self.voltage_limit_achieved)?
            .set_flag("PowerLimitAchieved", self.power_limit_achieved)?
            .set_flag("StopRequested", self.stop_requested)?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            voltage: Volts(d.physical("PresentVoltage")?),
            current: Amps(d.physical("PresentCurrent")?),
            current_limit_achieved: d.flag("CurrentLimitAchieved")?,
            voltage_limit_achieved: d.flag("VoltageLimitAchieved")?,
            power_limit_achieved: d.flag("PowerLimitAchieved")?,
            stop_requested: d.flag("StopRequested")?,
        })
    }
}

/// What the segment's contactors actually do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelayFeedback {
    /// Contactors whose auxiliary contact reads closed.
    pub closed: Contactors,
    /// Contactors in fault (welded, or failed to operate).
    pub faulted: Contactors,
    /// DC bus voltage on the segment.
    pub bus_voltage: Volts,
    /// Sequence of the last applied RelayCommand.
    pub ack_sequence: u8,
    /// Why the last command was not carried out, if it was not.
    pub refused: RefusedReason,
}

impl Payload for RelayFeedback {
    const NAME: &'static str = "RelayFeedback";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set("GcFeedback", self.closed.gun.into())?
            .set("McFeedback", self.closed.modules.into())?
            .set("MnFeedback", self.closed.ties.into())?
            .set("GcFault", self.faulted.gun.into())?
            .set("McFault", self.faulted.modules.into())?
            .set("MnFault", self.faulted.ties.into())?
            .set("BusVoltage", self.bus_voltage.0)?
            .set("AckSequence", self.ack_sequence.into())?
            .set_enum("RefusedReason", self.refused)?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            closed: Contactors {
                gun: d.int("GcFeedback")?,
                modules: d.int("McFeedback")?,
                ties: d.int("MnFeedback")?,
            },
            faulted: Contactors {
                gun: d.int("GcFault")?,
                modules: d.int("McFault")?,
                ties: d.int("MnFault")?,
            },
            bus_voltage: Volts(d.physical("BusVoltage")?),
            ack_sequence: d.int("AckSequence")?,
            refused: enum_of(d, "RefusedReason")?,
        })
    }
}

/// What the tie contactor's driver measures across the tie, for S3 and S4.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TieFeedback {
    /// Bus voltage of the next segment around the ring, on the far side of the tie.
    pub far_bus_voltage: Volts,
    /// Current through the tie, positive from this segment to the next.
    pub current: Amps,
}

impl Payload for TieFeedback {
    const NAME: &'static str = "TieFeedback";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set("FarBusVoltage", self.far_bus_voltage.0)?
            .set("TieCurrent", self.current.0)?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            far_bus_voltage: Volts(d.physical("FarBusVoltage")?),
            current: Amps(d.physical("TieCurrent")?),
        })
    }
}

/// Control pilot, authorisation, lock and isolation state of the gun.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChargeInfo {
    /// IEC 61851-1 control pilot state.
    pub cp: CpState,
    /// An id token awaits the host's decision.
    pub auth_pending: bool,
    /// Param 20 as the PLC holds it; GC closes only on Accepted (S5).
    pub auth: AuthStatus,
    /// Lock feedback; GC closes only when Locked (S5).
    pub lock: LockState,
    /// Isolation monitor result.
    pub isolation: IsolationState,
    /// The dispenser's emergency stop is pressed.
    pub emergency_stop: bool,
    /// The connector's temperature sensor is over its limit.
    pub connector_overtemp: bool,
    /// A residual-current device tripped.
    pub rcd_trip: bool,
    /// The PLC reports an internal fault.
    pub plc_fault: bool,
    /// Connector temperature.
    pub connector_temperature: Celsius,
}

impl Payload for ChargeInfo {
    const NAME: &'static str = "ChargeInfo";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set_enum("CpState", self.cp)?
            .set_flag("AuthPending", self.auth_pending)?
            .set_enum("AuthGranted", self.auth)?
            .set_enum("LockState", self.lock)?
            .set_enum("IsolationState", self.isolation)?
            .set_flag("EmergencyStop", self.emergency_stop)?
            .set_flag("ConnectorOvertemp", self.connector_overtemp)?
            .set_flag("RcdTrip", self.rcd_trip)?
            .set_flag("PlcFault", self.plc_fault)?
            .set("ConnectorTemp", self.connector_temperature.0)?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            cp: enum_of(d, "CpState")?,
            auth_pending: d.flag("AuthPending")?,
            auth: enum_of(d, "AuthGranted")?,
            lock: enum_of(d, "LockState")?,
            isolation: enum_of(d, "IsolationState")?,
            emergency_stop: d.flag("EmergencyStop")?,
            connector_overtemp: d.flag("ConnectorOvertemp")?,
            rcd_trip: d.flag("RcdTrip")?,
            plc_fault: d.flag("PlcFault")?,
            connector_temperature: Celsius(d.physical("ConnectorTemp")?),
        })
    }
}

/// SLAC and high-level communication progress, and what the EV asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Session {
    /// ISO 15118-3 SLAC state.
    pub slac: SlacState,
    /// Negotiated protocol.
    pub protocol: HlcProtocol,
    /// Current message phase.
    pub phase: HlcPhase,
    /// Voltage the EV requests.
    pub ev_target_voltage: Volts,
    /// Current the EV requests.
    pub ev_target_current: Amps,
    /// EV state of charge.
    pub soc: Percent,
    /// The EV reports it is ready to take energy.
    pub ev_ready: bool,
    /// Why the session failed or ended.
    pub error: HlcError,
}

impl Payload for Session {
    const NAME: &'static str = "Session";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set_enum("SlacState", self.slac)?
            .set_enum("HlcProtocol", self.protocol)?
            .set_enum("HlcPhase", self.phase)?
            .set("EvTargetVoltage", self.ev_target_voltage.0)?
            .set("EvTargetCurrent", self.ev_target_current.0)?
            .set("Soc", self.soc.0.into())?
            .set_flag("EvReady", self.ev_ready)?
            .set_enum("HlcError", self.error)?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            slac: enum_of(d, "SlacState")?,
            protocol: enum_of(d, "HlcProtocol")?,
            phase: enum_of(d, "HlcPhase")?,
            ev_target_voltage: Volts(d.physical("EvTargetVoltage")?),
            ev_target_current: Amps(d.physical("EvTargetCurrent")?),
            soc: Percent(d.int("Soc")?),
            ev_ready: d.flag("EvReady")?,
            error: enum_of(d, "HlcError")?,
        })
    }
}

/// One reading of one metering source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meter {
    /// Which instrument measured it.
    pub source: MeterSource,
    /// The instrument vouches for the reading.
    pub valid: bool,
    /// Voltage at the measuring point.
    pub voltage: Volts,
    /// Current, positive toward the EV.
    pub current: Amps,
    /// Import register (wraps at its maximum).
    pub energy: KilowattHours,
}

impl Payload for Meter {
    const NAME: &'static str = "Meter";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set_enum("Source", self.source)?
            .set_flag("Valid", self.valid)?
            .set("Voltage", self.voltage.0)?
            .set("Current", self.current.0)?
            .set("Energy", self.energy.0)?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            source: enum_of(d, "Source")?,
            valid: d.flag("Valid")?,
            voltage: Volts(d.physical("Voltage")?),
            current: Amps(d.physical("Current")?),
            energy: KilowattHours(d.physical("Energy")?),
        })
    }
}

/// The PLC's alive signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlcHeartbeat {
    /// Incremented every frame.
    pub counter: u8,
    /// Firmware state.
    pub state: PlcState,
    /// Firmware major version.
    pub firmware_major: u8,
    /// Firmware minor version.
    pub firmware_minor: u8,
    /// Seconds since the PLC booted; a drop means it rebooted.
    pub uptime_s: u32,
}

impl Payload for PlcHeartbeat {
    const NAME: &'static str = "PlcHeartbeat";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set("Counter", self.counter.into())?
            .set_enum("PlcState", self.state)?
            .set("FirmwareMajor", self.firmware_major.into())?
            .set("FirmwareMinor", self.firmware_minor.into())?
            .set("Uptime", self.uptime_s.into())?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            counter: d.int("Counter")?,
            state: enum_of(d, "PlcState")?,
            firmware_major: d.int("FirmwareMajor")?,
            firmware_minor: d.int("FirmwareMinor")?,
            uptime_s: d.int("Uptime")?,
        })
    }
}

/// An EUI-48 MAC address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

/// Characters of the EMAID carried by one EV identity frame.
pub const EMAID_CHARS_PER_FRAME: usize = 6;
/// Longest EMAID the transfer carries (ISO 15118-2 allows 15 characters, 18 with dashes).
pub const EMAID_MAX_LEN: usize = 3 * EMAID_CHARS_PER_FRAME;

/// One frame of a segmented EV identity transfer; see `ev_identity` for reassembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvIdentityFrame {
    /// Same in every frame of one transfer, different from the previous transfer's.
    pub transfer_id: u8,
    /// Which part of the identity this frame carries.
    pub part: EvIdentityPart,
}

/// The parts of an EV identity transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvIdentityPart {
    /// Frame 0: the EV's MAC and how many EMAID characters follow.
    Header {
        /// EV MAC from SLAC (used for AutoCharge).
        mac: MacAddress,
        /// EMAID characters in frames 1..=3; 0 when the EV sent no contract id.
        emaid_len: u8,
    },
    /// Frames 1..=3: six EMAID characters each, unused ones zero.
    Emaid {
        /// Frame index, 1..=3.
        index: u8,
        /// ASCII characters.
        chars: [u8; EMAID_CHARS_PER_FRAME],
    },
}

fn six_bytes(raw: i64) -> [u8; 6] {
    let bytes = (raw as u64).to_le_bytes();
    [bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]]
}

fn from_six_bytes(bytes: [u8; 6]) -> f64 {
    let [a, b, c, d, e, g] = bytes;
    u64::from_le_bytes([a, b, c, d, e, g, 0, 0]) as f64
}

impl Payload for EvIdentityFrame {
    const NAME: &'static str = "EvIdentity";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set("TransferId", self.transfer_id.into())?;
        match self.part {
            EvIdentityPart::Header { mac, emaid_len } => {
                w.set("FrameIndex", 0.0)?
                    .set("EvMac", from_six_bytes(mac.0))?
                    .set("EmaidLength", emaid_len.into())?;
            }
            EvIdentityPart::Emaid { index, chars } => {
                w.set("FrameIndex", index.into())?
                    .set(&format!("EmaidPart{index}"), from_six_bytes(chars))?;
            }
        }
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        let index: u8 = d.int("FrameIndex")?;
        let part = match index {
            0 => EvIdentityPart::Header {
                mac: MacAddress(six_bytes(d.raw("EvMac")?)),
                emaid_len: d.int("EmaidLength")?,
            },
            _ => EvIdentityPart::Emaid {
                index,
                chars: six_bytes(d.raw(&format!("EmaidPart{index}"))?),
            },
        };
        Ok(Self {
            transfer_id: d.int("TransferId")?,
            part,
        })
    }
}

/// An RFID card UID of 1 to 7 bytes (ISO 14443 single and double size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RfidUid {
    /// Number of valid bytes.
    len: u8,
    /// UID bytes; those past `len` are zero.
    bytes: [u8; 7],
}

impl RfidUid {
    /// A UID, or `None` if it is empty or longer than 7 bytes.
    pub fn new(uid: &[u8]) -> Option<Self> {
        if uid.is_empty() || uid.len() > 7 {
            return None;
        }
        let mut bytes = [0; 7];
        bytes[..uid.len()].copy_from_slice(uid);
        Some(Self {
            len: uid.len() as u8,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Display for RfidUid {
    /// Upper-case hex, as OCPP id tags conventionally spell a card UID.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_bytes()
            .iter()
            .try_for_each(|b| write!(f, "{b:02X}"))
    }
}

/// A card presented at the dispenser of the segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RfidRead {
    /// The card's UID.
    pub uid: RfidUid,
}

impl Payload for RfidRead {
    const NAME: &'static str = "RfidRead";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        let b = self.uid.bytes;
        w.set("UidLength", self.uid.len.into())?
            .set(
                "UidLow",
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]).into(),
            )?
            .set("UidHigh", u32::from_le_bytes([b[4], b[5], b[6], 0]).into())?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        let len: u8 = d.int("UidLength")?;
        let low = (d.raw("UidLow")? as u32).to_le_bytes();
        let high = (d.raw("UidHigh")? as u32).to_le_bytes();
        let bytes = [low[0], low[1], low[2], low[3], high[0], high[1], high[2]];
        // Bytes past the stated length must be zero, or the reader sent garbage.
        let uid = RfidUid::new(&bytes[..usize::from(len)]).filter(|uid| uid.bytes == bytes);
        uid.map(|uid| Self { uid })
            .ok_or_else(|| CodecError::Inconsistent {
                message: Self::NAME.to_owned(),
                signal: "UidHigh".to_owned(),
                reason: format!("UID bytes past UidLength {len} are not zero"),
            })
    }
}
