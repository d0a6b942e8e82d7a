//! One dispenser as an OCPP charge point, as the node sees it: what the gun's sessions
//! mean to the CSMS and what the CSMS's calls mean to the guns (issue 6). Sans-IO, like
//! the [`ChargePoint`] it wraps: it reads no clock, socket or channel.
//!
//! ```text
//!   DriverCommand (from the control task) ─► handle_command ┐
//!   CSMS frames ─► charge_point().handle_text, handle_timeout ├─► Dispenser ─► poll_report
//!   gun readings ─► set_readings                             ┘   (DriverReport for the
//!                                                                 control task), and the
//!                                                                 core's poll_transmit
//! ```
//!
//! The IO shell is [`super::driver`]: one task per dispenser that owns the WebSocket and
//! the channels, feeds every input in with `now`, forwards the reports and sleeps until
//! [`Dispenser::poll_timeout`]. Wall-clock timestamps are the CSMS's clock as the core
//! tracks it, or, before the CSMS has told its time, the local clock given to
//! [`Dispenser::new`] advanced by `now`.
//!
//! - **Status** (OCPP 1.6 §4.9): the gun's [`ConnectorStatus`] maps one to one onto
//!   ChargePointStatus, on the gun's connector id. Faulted carries the
//!   ChargePointErrorCode of the node's fault (§7.6), its code as `vendorErrorCode` and
//!   its subject as `info`.
//! - **Authorize** (§4.1, §3.5): the core decides, from the CSMS's answer or, by the
//!   configuration keys, from the Local Authorization List the CSMS sent, the
//!   Authorization Cache and the offline rules (see [`ChargePoint::authorize`]); the
//!   dispenser hands each decision to the guns that asked about the idTag. The cabinet's
//!   `local_auth_list` of the hub config is not an OCPP list: it serves `--auth local`
//!   and the guns of dispensers without a CSMS.
//! - **Transactions** (§4.8, §4.10): a session starts a transaction on the gun's
//!   connector when energy flows, or, with the dispenser's `transaction_start =
//!   "ev_connected"`, as soon as the EV is plugged in and the session authorised; with
//!   the session's id tag and the trusted meter's register in Wh as meterStart; the control task picks the id tag (the token's; for a
//!   session without a token, the EV's MAC in upper-case hex when known, else `FREE`).
//!   Timestamps are the CSMS's clock as the core tracks it, or this machine's clock
//!   before the CSMS has told its time. The end of the session stops it at once with
//!   meterStop = meterStart + the session's energy in Wh and the reason of
//!   [`stop_reason`], unless the dispenser itself asked for the stop: a StartTransaction.conf
//!   whose idTagInfo is not Accepted (DeAuthorized), a Reset (SoftReset, HardReset) or
//!   an UnlockConnector (UnlockCommand) stops the session through the control task
//!   ([`DriverReport::StopSession`]) and its Stop carries that reason.
//! - **MeterValues** (§4.7, §9.1): while a transaction runs, every
//!   MeterValueSampleInterval seconds (read at every sample, so a change takes effect at
//!   once; 0 turns sampling off), the connector's latest reading goes out as one
//!   MeterValue with context Sample.Periodic and the measurands MeterValuesSampledData
//!   lists. Every ClockAlignedDataInterval seconds of the wall clock (aligned to
//!   midnight; 0 turns it off), every gun's reading goes out with context Sample.Clock and
//!   the measurands of MeterValuesAlignedData, with the transactionId where one runs. The
//!   node measures Energy.Active.Import.Register (Wh), Power.Active.Import (W, the trusted
//!   meter's voltage × current), Current.Import (A), Voltage (V), and SoC (%, location
//!   EV) when the EV told it; other measurands are left out. OCPP 1.6 SampledValue has no
//!   field for the instrument, so the meter the node trusted is given by `location`:
//!   **Outlet** for the PLC's calibrated meter in the dispenser, **Body** for the
//!   cabinet's DC shunt. No sample is sent while the node trusts no meter. A Stop carries
//!   the Transaction.Begin and Transaction.End readings of StopTxnSampledData as its
//!   transactionData.
//! - **Persistence** (issue 6): each charge point keeps its journal in the node's redb
//!   store under its identity (`crate::store::RedbJournal`); calls that may write it
//!   block on the disk, which the shell allows for (see [`super::driver`]).
//! - **Restart recovery** (§4.10): at start, every transaction the journal still has open
//!   was cut by the restart (the node does not resume sessions), and is stopped before
//!   any command is served, so before any new Start on its connector, with reason
//!   **Reboot** when the previous run stopped cleanly (the store's clean-shutdown mark,
//!   written after every task ended) and **PowerLoss** when it did not (SIGKILL, a crash,
//!   a power cut). meterStop is the trusted meter's register of the connector's gun,
//!   waited for up to [`RECOVERY_READING_WAIT`]; without one, the journaled Start's meterStart when
//!   the Start is still unconfirmed; else 0, logged as an error (a confirmed Start is
//!   deleted from the journal, its meterStart with it).
//! - **RemoteStopTransaction** (§5.12): Accepted when the transactionId is one this
//!   dispenser started and has not stopped (confirmed by the CSMS, so it has its id); the
//!   control task is asked to stop that gun's session ([`DriverReport::StopSession`]) and
//!   the Stop that follows carries reason Remote. Any other id is Rejected.
//! - **ChangeAvailability** (§5.2): connector N, or 0 for every gun of the dispenser;
//!   an unknown connector is Rejected. A gun without a running transaction gets the
//!   change at once ([`DriverReport::SetAvailable`], the control task applies
//!   `Command::SetAvailable`) and the answer is Accepted; its status then goes to
//!   Unavailable / Available through the usual status path. A gun with a running
//!   transaction keeps it: the change is held in the dispenser and handed to the control
//!   task when that transaction stops (the controller's `SetAvailable(false)` would cut a
//!   running session), and the answer is Scheduled (for connector 0: Scheduled if any gun
//!   has one). A later change for the same gun replaces a held one. The change is stored
//!   in the journal before the answer, and applied again at the next start ("persistent
//!   across reboots"). Connector 0 reports the dispenser: Faulted while the dispenser's
//!   emergency stop holds a gun, or while a hub- or cabinet-wide latch of the record
//!   holds its cabinet (`CABINET_LOST`: the catalog's error code, the code as
//!   vendorErrorCode, the subject as info; [`DriverCommand::SiteFault`]); Unavailable
//!   while connector 0 is Inoperative; else Available.
//!   A session that starts between the Accepted decision and the control task applying
//!   Inoperative is stopped by it (with reason Remote).
//! - **RemoteStartTransaction** (§5.11), **Reset** (§5.14), **UnlockConnector** (§5.18),
//!   **TriggerMessage** for MeterValues (§5.17) and **DataTransfer** (§5.5, no vendor
//!   extension: UnknownVendorId): see `requests.rs`.
//! - **ConnectionTimeOut** (§9.1): the controller cancels a preparation (token without
//!   plug-in, or plug-in without token) after it; the dispenser hands the key's value to
//!   the control task at start and whenever the CSMS changes it
//!   ([`DriverReport::ConnectionTimeout`]).

mod convert;
mod requests;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ringhub_proto::can::messages::LockState;
use ringhub_proto::config::GunId;
use ringhub_proto::units::Percent;

use self::convert::{measurands, meter_value, truncate};
pub use self::convert::{ocpp_status, stop_reason, watt_hours};
use self::requests::{PendingReset, PendingUnlock};
use super::charge_point::{
    Authority, CallFailure, ChargePoint, Confirmation, Event, OutgoingCall, TxMessage,
};
use super::messages::central_system::ResetType;
use super::messages::charge_point::Reason;
use super::messages::meter::{MeterValue, ReadingContext};
use super::messages::{AuthorizationStatus, IdTagInfo};
use super::types::{CiString20, DateTime};
use crate::connector::{AuthDecision, ConnectorStatus, IdToken, LocalFault, MeterView};

/// The configuration key with the seconds between transaction meter samples.
const METER_VALUE_SAMPLE_INTERVAL: &str = "MeterValueSampleInterval";
/// The configuration key with the measurands of those samples.
const METER_VALUES_SAMPLED_DATA: &str = "MeterValuesSampledData";
/// The configuration key with the measurands of a Stop's transactionData.
const STOP_TXN_SAMPLED_DATA: &str = "StopTxnSampledData";
/// The configuration key with the seconds between clock-aligned readings.
const CLOCK_ALIGNED_DATA_INTERVAL: &str = "ClockAlignedDataInterval";
/// The configuration key with the measurands of clock-aligned readings.
const METER_VALUES_ALIGNED_DATA: &str = "MeterValuesAlignedData";
/// The configuration key the controller's preparation timeout follows.
const CONNECTION_TIME_OUT: &str = "ConnectionTimeOut";
/// How often pending UnlockConnector calls look at the lock.
const UNLOCK_POLL: Duration = Duration::from_millis(100);
/// The id tag of a session that started without a token and without a known EV MAC.
pub const FREE_ID_TAG: &str = "FREE";

/// How the node's previous run ended, which names the end of a transaction it cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousStop {
    /// It stopped cleanly (a signal, `ringhub` shutting down): Reboot.
    Clean,
    /// It was killed, crashed or lost power: PowerLoss.
    Crash,
}

impl PreviousStop {
    /// The StopTransaction reason of a transaction the stop cut (§7.40).
    pub fn reason(self) -> Reason {
        match self {
            Self::Clean => Reason::Reboot,
            Self::Crash => Reason::PowerLoss,
        }
    }
}

/// What the control task tells a dispenser (through its driver task).
#[derive(Debug, Clone, PartialEq)]
pub enum DriverCommand {
    /// A gun's status changed (or its fault did, while Faulted).
    Status {
        /// The gun's OCPP connector id on this dispenser.
        connector: u32,
        /// Its new status.
        status: ConnectorStatus,
        /// The fault behind a Faulted status, for its error code and texts.
        fault: Option<LocalFault>,
    },
    /// Ask whether `token` may charge on `gun`.
    Authorize {
        /// The gun the token was presented at, echoed in the result.
        gun: GunId,
        /// The token.
        token: IdToken,
    },
    /// A session started on the connector: start its transaction.
    StartTransaction {
        /// The gun's OCPP connector id.
        connector: u32,
        /// The session's id tag.
        id_tag: String,
        /// The trusted meter's register at the start, Wh.
        meter_start_wh: i32,
    },
    /// The hub- or cabinet-wide latch that holds this dispenser's cabinet now, if any:
    /// reported on connector 0.
    SiteFault(Option<SiteFault>),
    /// The connector's session ended: stop its transaction.
    StopTransaction {
        /// The gun's OCPP connector id.
        connector: u32,
        /// Why, in OCPP's words.
        reason: Reason,
        /// The energy the session delivered, Wh.
        energy_wh: i32,
    },
}

/// A latch of the hub record that stops a whole cabinet or the hub (`CABINET_LOST`), as
/// connector 0 of each of that cabinet's dispensers reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteFault {
    /// The catalog's code: the vendorErrorCode, and the ChargePointErrorCode by the
    /// catalog.
    pub code: String,
    /// What it is about (`cabinet cab-b`): the info.
    pub subject: String,
}

/// What a dispenser tells the control task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverReport {
    /// The decision on an Authorize.
    Auth(AuthResult),
    /// Stop `gun`'s session: the CSMS refused the id tag of its transaction, or asked
    /// for it by RemoteStopTransaction.
    StopSession {
        /// The gun.
        gun: GunId,
    },
    /// The CSMS changed `gun`'s availability (ChangeAvailability): allow new sessions or
    /// stop allowing them. Sent only while the gun has no transaction.
    SetAvailable {
        /// The gun.
        gun: GunId,
        /// Operative (true) or Inoperative (false).
        available: bool,
    },
    /// RemoteStartTransaction: `gun` may start a session with `token`, already
    /// authorised.
    RemoteStart {
        /// The gun.
        gun: GunId,
        /// The remote token (its id tag is the transaction's).
        token: IdToken,
    },
    /// UnlockConnector: unlock `gun` (stopping its session first).
    Unlock {
        /// The gun.
        gun: GunId,
    },
    /// ConnectionTimeOut of `gun`'s dispenser is now `timeout`.
    ConnectionTimeout {
        /// The gun.
        gun: GunId,
        /// The new value.
        timeout: Duration,
    },
}

/// The latest reading of a gun, for MeterValues.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GunReading {
    /// Which gun.
    pub gun: GunId,
    /// The reading the node trusts, with its source.
    pub meter: Option<MeterView>,
    /// EV state of charge.
    pub soc: Option<Percent>,
    /// The connector lock, for UnlockConnector.
    pub lock: LockState,
}

/// The decision on one [`DriverCommand::Authorize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResult {
    /// The gun it was asked for.
    pub gun: GunId,
    /// The token decided.
    pub token: IdToken,
    /// Accepted or Rejected.
    pub decision: AuthDecision,
}

/// One dispenser's charge point and what the node knows of its guns; see the module
/// docs.
pub struct Dispenser {
    /// The sans-IO charge point.
    cp: ChargePoint,
    /// The charge point identity, for logs.
    identity: String,
    /// The local wall clock at an instant: timestamps before the CSMS has told its time.
    local_clock: (Instant, i64),
    /// Authorize calls asked and not yet answered, in the order they were queued.
    pending: VecDeque<(GunId, IdToken, CiString20)>,
    /// Reports for the control task, in order.
    reports: VecDeque<DriverReport>,
    /// This dispenser's guns and their connector ids.
    guns: Vec<(GunId, u32)>,
    /// The latest readings of every gun of the node.
    readings: Vec<GunReading>,
    /// Per connector: the transaction this dispenser started and has not stopped.
    running: BTreeMap<u32, Running>,
    /// Per connector: the availability a ChangeAvailability answered Scheduled asked
    /// for, applied when the connector's transaction stops.
    scheduled: BTreeMap<u32, bool>,
    /// How the previous run ended, for the reason of the transactions it cut.
    previous_stop: PreviousStop,
    /// Per connector: the last status the control task reported.
    statuses: BTreeMap<u32, ConnectorStatus>,
    /// A Reset accepted and not yet carried out.
    reset: Option<PendingReset>,
    /// UnlockConnector calls waiting for the lock.
    unlocks: Vec<PendingUnlock>,
    /// When the next clock-aligned reading is due.
    aligned_at: Option<Instant>,
    /// Per connector: the fault behind its Faulted status, for connector 0's.
    faults: BTreeMap<u32, LocalFault>,
    /// The hub- or cabinet-wide latch in force, for connector 0's status.
    site_fault: Option<SiteFault>,
}

/// A transaction the dispenser started.
#[derive(Debug, Clone)]
struct Running {
    /// Its meterStart, Wh.
    meter_start_wh: i32,
    /// When its last sample was taken (its start, before the first).
    last_sample: Instant,
    /// The dispenser stopped it (CSMS refused the id tag, Reset, UnlockConnector): the
    /// reason its Stop carries.
    stop_reason: Option<Reason>,
    /// The Transaction.Begin reading of StopTxnSampledData, for the Stop's
    /// transactionData.
    begin: Option<MeterValue>,
}

impl std::fmt::Debug for Dispenser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispenser")
            .field("identity", &self.identity)
            .field("cp", &self.cp)
            .field("running", &self.running.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Dispenser {
    /// A dispenser with `guns` (gun, connector id) over `cp`. `local_clock` is the local
    /// wall clock (Unix ms) at an instant; `previous_stop` names the end of the
    /// transactions the last run left open.
    pub fn new(
        cp: ChargePoint,
        identity: impl Into<String>,
        guns: Vec<(GunId, u32)>,
        previous_stop: PreviousStop,
        local_clock: (Instant, i64),
    ) -> Self {
        Self {
            cp,
            identity: identity.into(),
            local_clock,
            pending: VecDeque::new(),
            reports: VecDeque::new(),
            guns,
            readings: Vec::new(),
            running: BTreeMap::new(),
            scheduled: BTreeMap::new(),
            previous_stop,
            statuses: BTreeMap::new(),
            reset: None,
            unlocks: Vec::new(),
            aligned_at: None,
            faults: BTreeMap::new(),
            site_fault: None,
        }
    }

    /// The charge point, for the shell's connection events and frames.
    pub fn charge_point(&mut self) -> &mut ChargePoint {
        &mut self.cp
    }

    /// The charge point identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The latest readings of the node's guns.
    pub fn set_readings(&mut self, readings: Vec<GunReading>) {
        self.readings = readings;
    }

    /// The next report for the control task.
    pub fn poll_report(&mut self) -> Option<DriverReport> {
        self.reports.pop_front()
    }

    /// Before the first connection: the stored availability and ConnectionTimeOut go to
    /// the control task, connector 0 is reported, and clock-aligned readings scheduled.
    /// Returns the connectors of the transactions a restart cut, whose guns'
    /// readings [`Self::recover`] wants.
    pub fn start(&mut self, now: Instant) -> Vec<(GunId, u32)> {
        self.restore_availability();
        self.report_connection_timeout();
        self.report_dispenser_status(now);
        self.schedule_aligned(now);
        self.cp
            .open_transactions()
            .iter()
            .filter_map(|open| self.gun_of(open.connector).map(|gun| (gun, open.connector)))
            .collect()
    }

    /// When [`Self::handle_timeout`] is to be called next: the core's timers, the next
    /// meter sample, a clock-aligned reading, a waiting unlock or a Soft reset's grace.
    pub fn poll_timeout(&self, now: Instant) -> Option<Instant> {
        let unlock_poll = (!self.unlocks.is_empty()).then(|| now + UNLOCK_POLL);
        let reset = self
            .reset
            .filter(|r| r.kind == ResetType::Soft)
            .map(|r| r.deadline);
        self.cp
            .poll_timeout()
            .into_iter()
            .chain(self.next_sample())
            .chain(self.aligned_at)
            .chain(unlock_poll)
            .chain(reset)
            .min()
    }

    /// Schedules the next clock-aligned reading: the next multiple of
    /// ClockAlignedDataInterval since midnight (UTC) on the wall clock; none when 0.
    fn schedule_aligned(&mut self, now: Instant) {
        let seconds = self
            .cp
            .configuration()
            .int(CLOCK_ALIGNED_DATA_INTERVAL)
            .unwrap_or(0);
        self.aligned_at = (seconds > 0).then(|| {
            let period = seconds.saturating_mul(1000);
            let wall = self.timestamp(now).unix_millis();
            let wait = period - wall.rem_euclid(period);
            now + Duration::from_millis(u64::try_from(wait).unwrap_or(0))
        });
    }

    /// MeterValueSampleInterval; `None` when sampling is off.
    fn sample_interval(&self) -> Option<Duration> {
        let seconds = self
            .cp
            .configuration()
            .int(METER_VALUE_SAMPLE_INTERVAL)
            .unwrap_or(0);
        u64::try_from(seconds)
            .ok()
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
    }

    /// When the next meter sample is due.
    fn next_sample(&self) -> Option<Instant> {
        let interval = self.sample_interval()?;
        self.running
            .values()
            .map(|r| r.last_sample + interval)
            .min()
    }

    /// Serves every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.cp.handle_timeout(now);
        self.check_unlocks(now);
        if let Some(due) = self.aligned_at.filter(|&at| at <= now) {
            self.send_aligned(due, now);
            // Past the boundary now: the next one is a whole period on.
            self.schedule_aligned(now + Duration::from_millis(1));
        }
        let Some(interval) = self.sample_interval() else {
            return;
        };
        let due: Vec<u32> = self
            .running
            .iter()
            .filter(|(_, r)| r.last_sample + interval <= now)
            .map(|(&connector, _)| connector)
            .collect();
        let wanted = self.measurands(METER_VALUES_SAMPLED_DATA);
        let timestamp = self.timestamp(now);
        for connector in due {
            if let Some(running) = self.running.get_mut(&connector) {
                running.last_sample = now;
            }
            let value = self
                .gun_of(connector)
                .and_then(|gun| self.reading(gun))
                .and_then(|r| {
                    meter_value(
                        &r,
                        timestamp.clone(),
                        ReadingContext::SamplePeriodic,
                        &wanted,
                    )
                });
            let Some(value) = value else {
                tracing::debug!(identity = %self.identity, connector, "no trusted reading: sample skipped");
                continue;
            };
            if let Err(error) = self.cp.meter_values(connector, vec![value], now) {
                tracing::error!(identity = %self.identity, connector, %error, "MeterValues not sent");
            }
        }
    }

    /// Sends every gun's clock-aligned reading (§9.1 ClockAlignedDataInterval), stamped
    /// with the boundary it was due at, however late the timer fired.
    fn send_aligned(&mut self, due: Instant, now: Instant) {
        let wanted = self.measurands(METER_VALUES_ALIGNED_DATA);
        let timestamp = self.timestamp(due);
        let guns = self.guns.clone();
        for (gun, connector) in guns {
            let value = self.reading(gun).and_then(|r| {
                meter_value(&r, timestamp.clone(), ReadingContext::SampleClock, &wanted)
            });
            if let Some(value) = value
                && let Err(error) = self.cp.meter_values(connector, vec![value], now)
            {
                tracing::debug!(identity = %self.identity, connector, %error, "clock-aligned MeterValues not sent");
            }
        }
    }

    /// A reading of `connector` for a Stop's transactionData, with the measurands of
    /// StopTxnSampledData.
    fn stop_txn_sample(
        &self,
        connector: u32,
        context: ReadingContext,
        now: Instant,
    ) -> Option<MeterValue> {
        let wanted = self.measurands(STOP_TXN_SAMPLED_DATA);
        let reading = self.reading(self.gun_of(connector)?)?;
        meter_value(&reading, self.timestamp(now), context, &wanted)
    }

    /// The measurands a `*Data` key lists.
    fn measurands(&self, key: &str) -> Vec<super::messages::meter::Measurand> {
        measurands(self.cp.configuration().get(key).unwrap_or_default())
    }

    /// The wall-clock time at `now`: the CSMS's, else the local clock's.
    fn timestamp(&self, now: Instant) -> DateTime {
        self.cp.wall_clock(now).unwrap_or_else(|| {
            let (at, millis) = self.local_clock;
            let since = i64::try_from(now.saturating_duration_since(at).as_millis());
            DateTime::from_unix_millis(millis.saturating_add(since.unwrap_or(i64::MAX)))
        })
    }

    /// A command of the control task.
    pub fn handle_command(&mut self, command: DriverCommand, now: Instant) {
        match command {
            DriverCommand::Status {
                connector,
                status,
                fault,
            } => {
                self.statuses.insert(connector, status);
                if let Some(fault) = &fault {
                    self.faults.insert(connector, fault.clone());
                } else if status != ConnectorStatus::Faulted {
                    self.faults.remove(&connector);
                }
                let (status, error_code, detail) = ocpp_status(status, fault.as_ref());
                if let Err(error) = self
                    .cp
                    .set_status(connector, status, error_code, detail, now)
                {
                    tracing::error!(identity = %self.identity, %error, "status not reported");
                }
                self.report_dispenser_status(now);
            }
            DriverCommand::SiteFault(fault) => {
                if fault != self.site_fault {
                    self.site_fault = fault;
                    self.report_dispenser_status(now);
                }
            }
            DriverCommand::Authorize { gun, token } => match CiString20::new(token.id_tag()) {
                Ok(id_tag) => {
                    self.pending.push_back((gun, token, id_tag.clone()));
                    self.cp.authorize(id_tag, now);
                }
                Err(_) => {
                    tracing::info!(identity = %self.identity, %gun, %token, "idTag longer than 20 characters: rejected");
                    self.decide(gun, token, AuthDecision::Rejected);
                }
            },
            DriverCommand::StartTransaction {
                connector,
                id_tag,
                meter_start_wh,
            } => {
                // Only a local decision can accept a tag over 20 characters (the CSMS is
                // never asked about one); the transaction carries its first 20.
                let Ok(tag) = CiString20::new(truncate(&id_tag, 20)) else {
                    tracing::error!(identity = %self.identity, connector, id_tag, "idTag not printable ASCII: no transaction");
                    return;
                };
                let timestamp = self.timestamp(now);
                match self
                    .cp
                    .start_transaction(connector, tag, meter_start_wh, timestamp, now)
                {
                    Ok(local) => {
                        tracing::info!(identity = %self.identity, connector, id_tag, meter_start_wh, local, "transaction started");
                        self.running.insert(
                            connector,
                            Running {
                                meter_start_wh,
                                last_sample: now,
                                stop_reason: None,
                                begin: self.stop_txn_sample(
                                    connector,
                                    ReadingContext::TransactionBegin,
                                    now,
                                ),
                            },
                        );
                    }
                    Err(error) => {
                        tracing::error!(identity = %self.identity, connector, %error, "StartTransaction not stored");
                    }
                }
            }
            DriverCommand::StopTransaction {
                connector,
                reason,
                energy_wh,
            } => {
                if let Some(available) = self.scheduled.remove(&connector) {
                    self.set_available(connector, available);
                }
                let Some(running) = self.running.remove(&connector) else {
                    tracing::warn!(identity = %self.identity, connector, "session ended without a transaction");
                    return;
                };
                let reason = running.stop_reason.unwrap_or(reason);
                let meter_stop_wh = running.meter_start_wh.saturating_add(energy_wh);
                let timestamp = self.timestamp(now);
                let end = self.stop_txn_sample(connector, ReadingContext::TransactionEnd, now);
                let data = running.begin.into_iter().chain(end).collect();
                match self.cp.stop_transaction(
                    connector,
                    meter_stop_wh,
                    reason,
                    timestamp,
                    data,
                    now,
                ) {
                    Ok(local) => {
                        tracing::info!(identity = %self.identity, connector, meter_stop_wh, ?reason, local, "transaction stopped");
                    }
                    Err(error) => {
                        tracing::error!(identity = %self.identity, connector, %error, "StopTransaction not stored");
                    }
                }
            }
        }
    }

    /// Handles the core's events; true if the CSMS answered any call (the link works).
    pub fn handle_events(&mut self, now: Instant) -> bool {
        let mut answered = false;
        while let Some(event) = self.cp.poll_event() {
            match event {
                Event::Answered { request, outcome } => {
                    answered |= outcome.is_ok();
                    self.handle_answer(request, outcome);
                }
                Event::Request(request) => self.handle_request(request, now),
                Event::Authorized {
                    id_tag,
                    accepted,
                    info,
                    authority,
                } => {
                    answered |= authority == Authority::Csms;
                    self.authorized(&id_tag, accepted, info.as_ref(), authority);
                }
                Event::ConfigurationChanged { key, value } => {
                    tracing::info!(identity = %self.identity, key, %value, "configuration changed");
                    if key == CONNECTION_TIME_OUT {
                        self.report_connection_timeout();
                    }
                    if key == CLOCK_ALIGNED_DATA_INTERVAL {
                        self.schedule_aligned(now);
                    }
                }
                Event::TransactionStarted {
                    connector,
                    local,
                    transaction_id,
                    id_tag_info,
                } => {
                    answered = true;
                    tracing::info!(identity = %self.identity, connector, local, transaction_id, status = ?id_tag_info.status, "StartTransaction confirmed");
                    let stop = self
                        .cp
                        .configuration()
                        .bool("StopTransactionOnInvalidId")
                        .unwrap_or(true);
                    if id_tag_info.status != AuthorizationStatus::Accepted && stop {
                        self.deauthorize(connector);
                    }
                }
                Event::TransactionMessageDropped { request, failure } => {
                    tracing::error!(identity = %self.identity, ?request, ?failure, "transaction message given up");
                }
                Event::JournalFailed(error) => {
                    tracing::error!(identity = %self.identity, %error, "transaction journal failed");
                }
            }
        }
        answered
    }

    fn handle_answer(&mut self, request: OutgoingCall, outcome: Result<Confirmation, CallFailure>) {
        match (request, outcome) {
            (OutgoingCall::BootNotification(_), Ok(Confirmation::BootNotification(conf))) => {
                tracing::info!(identity = %self.identity, status = ?conf.status, interval = conf.interval, "BootNotification answered");
            }
            (request, Ok(_)) => {
                tracing::debug!(identity = %self.identity, ?request, "answered");
            }
            (request, Err(failure)) => {
                tracing::warn!(identity = %self.identity, ?request, %failure, "call failed");
            }
        }
    }

    /// The core decided an idTag: the decision goes to every gun that asked about it.
    fn authorized(
        &mut self,
        id_tag: &CiString20,
        accepted: bool,
        info: Option<&IdTagInfo>,
        authority: Authority,
    ) {
        let decision = if accepted {
            AuthDecision::Accepted
        } else {
            AuthDecision::Rejected
        };
        let status = info.map(|i| i.status);
        let mut asked = false;
        while let Some(index) = self.pending.iter().position(|(.., tag)| tag == id_tag) {
            let Some((gun, token, _)) = self.pending.remove(index) else {
                break;
            };
            asked = true;
            tracing::info!(identity = %self.identity, %gun, %token, ?decision, ?status, ?authority, "authorisation");
            match (&token, decision) {
                // AuthorizeRemoteTxRequests: the remote start goes ahead only if accepted.
                (IdToken::Remote(_), AuthDecision::Accepted) => {
                    self.report(DriverReport::RemoteStart { gun, token });
                }
                (IdToken::Remote(_), AuthDecision::Rejected) => {}
                _ => self.decide(gun, token, decision),
            }
        }
        if !asked {
            tracing::warn!(identity = %self.identity, %id_tag, "a decision nobody asked for");
        }
    }

    fn decide(&mut self, gun: GunId, token: IdToken, decision: AuthDecision) {
        self.report(DriverReport::Auth(AuthResult {
            gun,
            token,
            decision,
        }));
    }

    /// Stops the transactions a restart cut (see the module docs), with the trusted
    /// registers of the readings set now; call it once, before the first command.
    pub fn recover(&mut self, now: Instant) {
        let stored = self.cp.journal().load().unwrap_or_default();
        for open in self.cp.open_transactions() {
            let register = self
                .gun_of(open.connector)
                .and_then(|gun| self.reading(gun))
                .and_then(|r| r.meter)
                .map(|m| watt_hours(m.energy_register));
            let journaled_start = stored.messages.values().find_map(|m| match m {
                TxMessage::Start { local, request } if *local == open.local => {
                    Some(request.meter_start)
                }
                _ => None,
            });
            let meter_stop_wh = match (register, journaled_start) {
                (Some(wh), _) => wh,
                (None, Some(wh)) => {
                    tracing::warn!(identity = %self.identity, local = open.local, "no trusted reading: meterStop = the journaled meterStart");
                    wh
                }
                (None, None) => {
                    tracing::error!(identity = %self.identity, local = open.local, "no trusted reading and no meterStart left: meterStop = 0");
                    0
                }
            };
            let reason = self.previous_stop.reason();
            let timestamp = self.timestamp(now);
            match self.cp.stop_transaction(
                open.connector,
                meter_stop_wh,
                reason,
                timestamp,
                Vec::new(),
                now,
            ) {
                Ok(local) => {
                    tracing::info!(identity = %self.identity, connector = open.connector, local, transaction_id = ?open.transaction_id, meter_stop_wh, ?reason, "transaction cut by a restart stopped");
                }
                Err(error) => {
                    tracing::error!(identity = %self.identity, connector = open.connector, %error, "StopTransaction of a cut transaction not stored");
                }
            }
        }
    }

    /// The CSMS refused the id tag of the transaction on `connector`: its session is
    /// stopped (StopTransactionOnInvalidId, §4.8) and its Stop says DeAuthorized.
    fn deauthorize(&mut self, connector: u32) {
        tracing::info!(identity = %self.identity, connector, "idTag refused by the CSMS: stopping the session");
        self.stop_with(connector, Reason::DeAuthorized);
    }

    /// The gun on `connector`.
    fn gun_of(&self, connector: u32) -> Option<GunId> {
        self.guns
            .iter()
            .find(|&&(_, c)| c == connector)
            .map(|&(gun, _)| gun)
    }

    /// The latest reading of `gun`.
    fn reading(&self, gun: GunId) -> Option<GunReading> {
        self.readings.iter().find(|r| r.gun == gun).copied()
    }

    /// Reports connector 0, the dispenser itself (§4.9: Available, Unavailable or
    /// Faulted): Faulted while the emergency stop of the dispenser holds one of its guns,
    /// or a hub- or cabinet-wide latch holds its cabinet; Unavailable while
    /// ChangeAvailability made connector 0 Inoperative; else Available.
    fn report_dispenser_status(&mut self, now: Instant) {
        let stopped = self
            .faults
            .values()
            .find(|f| f.code == crate::connector::FaultCode::EmergencyStop)
            .cloned();
        let (status, error_code, detail) = match (stopped, &self.site_fault) {
            (Some(fault), _) => ocpp_status(ConnectorStatus::Faulted, Some(&fault)),
            (None, Some(site)) => convert::faulted(&site.code, &site.subject),
            (None, None) if self.cp.stored_availability().get(&0) == Some(&false) => {
                ocpp_status(ConnectorStatus::Unavailable, None)
            }
            (None, None) => ocpp_status(ConnectorStatus::Available, None),
        };
        if let Err(error) = self.cp.set_status(0, status, error_code, detail, now) {
            tracing::error!(identity = %self.identity, %error, "connector 0 status not reported");
        }
    }

    /// Hands ConnectionTimeOut to the control task for every gun.
    fn report_connection_timeout(&mut self) {
        let seconds = self
            .cp
            .configuration()
            .int(CONNECTION_TIME_OUT)
            .unwrap_or(60);
        let timeout = Duration::from_secs(u64::try_from(seconds).unwrap_or(60));
        for (gun, _) in self.guns.clone() {
            self.report(DriverReport::ConnectionTimeout { gun, timeout });
        }
    }

    /// Asks the control task to make `connector`'s gun (un)available.
    fn set_available(&mut self, connector: u32, available: bool) {
        if let Some(&(gun, _)) = self.guns.iter().find(|(_, c)| *c == connector) {
            self.report(DriverReport::SetAvailable { gun, available });
        }
    }

    fn report(&mut self, report: DriverReport) {
        self.reports.push_back(report);
    }
}
