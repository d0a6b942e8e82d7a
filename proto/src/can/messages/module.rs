//! Frames between the host and the AC/DC power modules (29-bit ids, DESIGN.md §5).

use super::enums::{ModuleOutput, ModuleState};
use super::{Payload, enum_of};
use crate::can::catalog::{CodecError, Decoded, FrameWriter};
use crate::units::{Amps, Celsius, Kilowatts, Volts};

/// The operating point the host asks of a module.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModuleSetpoint {
    /// Output voltage: the island's voltage.
    pub voltage: Volts,
    /// Output current limit: the module's share of the island's current.
    pub current_limit: Amps,
    /// Output power limit: the module's share of the gun's budget.
    pub power_limit: Kilowatts,
}

impl Payload for ModuleSetpoint {
    const NAME: &'static str = "ModuleSetpoint";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set("Voltage", self.voltage.0)?
            .set("CurrentLimit", self.current_limit.0)?
            .set("PowerLimit", self.power_limit.0)?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            voltage: Volts(d.physical("Voltage")?),
            current_limit: Amps(d.physical("CurrentLimit")?),
            power_limit: Kilowatts(d.physical("PowerLimit")?),
        })
    }
}

/// Turns a module's output on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleEnable {
    /// The commanded output.
    pub output: ModuleOutput,
    /// Changes on every new command, so a repeat is recognisable.
    pub sequence: u8,
}

impl Payload for ModuleEnable {
    const NAME: &'static str = "ModuleEnable";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set_enum("Enable", self.output)?
            .set("Sequence", self.sequence.into())?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            output: enum_of(d, "Enable")?,
            sequence: d.int("Sequence")?,
        })
    }
}

/// What a module delivers and can deliver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModuleStatus {
    /// Measured output voltage.
    pub output_voltage: Volts,
    /// Measured output current.
    pub output_current: Amps,
    /// Hottest internal temperature.
    pub temperature: Celsius,
    /// Operating state.
    pub state: ModuleState,
    /// Power it can deliver now, after derating; the planner's input.
    pub available_power: Kilowatts,
}

impl Payload for ModuleStatus {
    const NAME: &'static str = "ModuleStatus";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set("OutputVoltage", self.output_voltage.0)?
            .set("OutputCurrent", self.output_current.0)?
            .set("Temperature", self.temperature.0)?
            .set_enum("State", self.state)?
            .set("AvailablePower", self.available_power.0)?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            output_voltage: Volts(d.physical("OutputVoltage")?),
            output_current: Amps(d.physical("OutputCurrent")?),
            temperature: Celsius(d.physical("Temperature")?),
            state: enum_of(d, "State")?,
            available_power: Kilowatts(d.physical("AvailablePower")?),
        })
    }
}

/// A module's fault flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleFaults {
    /// Shut down or derating for temperature.
    pub over_temperature: bool,
    /// Output voltage above its limit.
    pub output_overvoltage: bool,
    /// Output current above its limit.
    pub output_overcurrent: bool,
    /// AC input out of range.
    pub input_fault: bool,
    /// Cooling fan failed.
    pub fan_failure: bool,
    /// Output short circuit detected.
    pub short_circuit: bool,
    /// The module lost the host's commands.
    pub communication_loss: bool,
    /// Any other internal fault.
    pub internal_fault: bool,
    /// Vendor-specific fault code, for the service technician.
    pub vendor_code: u16,
}

impl ModuleFaults {
    /// Whether any fault flag is set.
    pub fn any(&self) -> bool {
        self.over_temperature
            || self.output_overvoltage
            || self.output_overcurrent
            || self.input_fault
            || self.fan_failure
            || self.short_circuit
            || self.communication_loss
            || self.internal_fault
    }
}

impl Payload for ModuleFaults {
    const NAME: &'static str = "ModuleFaults";

    fn write(&self, w: &mut FrameWriter<'_>) -> Result<(), CodecError> {
        w.set_flag("OverTemperature", self.over_temperature)?
            .set_flag("OutputOvervoltage", self.output_overvoltage)?
            .set_flag("OutputOvercurrent", self.output_overcurrent)?
            .set_flag("InputFault", self.input_fault)?
            .set_flag("FanFailure", self.fan_failure)?
            .set_flag("ShortCircuit", self.short_circuit)?
            .set_flag("CommunicationLoss", self.communication_loss)?
            .set_flag("InternalFault", self.internal_fault)?
            .set("VendorCode", self.vendor_code.into())?;
        Ok(())
    }

    fn read(d: &Decoded<'_>) -> Result<Self, CodecError> {
        Ok(Self {
            over_temperature: d.flag("OverTemperature")?,
            output_overvoltage: d.flag("OutputOvervoltage")?,
            output_overcurrent: d.flag("OutputOvercurrent")?,
            input_fault: d.flag("InputFault")?,
            fan_failure: d.flag("FanFailure")?,
            short_circuit: d.flag("ShortCircuit")?,
            communication_loss: d.flag("CommunicationLoss")?,
            internal_fault: d.flag("InternalFault")?,
            vendor_code: d.int("VendorCode")?,
        })
    }
}
