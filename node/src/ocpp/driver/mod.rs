//! The IO around [`ChargePoint`]: one tokio task per dispenser identity that owns the
//! sans-IO core and the WebSocket, and talks to the control task by messages only
//! (issue 6: boot, status, authorize, transactions and their meter values).
//!
//! ```text
//!  control task ──DriverCommand (mpsc)──► driver task (per dispenser) ──text──► CSMS
//!       │ ▲ Status, Authorize,             ChargePoint + Reconnector ◄─text───
//!       │ │ StartTransaction, StopTransaction    │
//!       │ └─── DriverReport (mpsc) ◄─────────────┘  Authorize decisions, stop requests,
//!       │                                            remote starts, unlocks, availability
//!       └───── gun readings (watch, every snapshot hand-over) ──► MeterValues samples
//! ```
//!
//! The control task never awaits the CSMS: it sends a command and goes on; the decision
//! of an Authorize comes back later as a [`DriverReport`] it selects on. Readings go
//! through a watch: the control task overwrites the latest ones, and a driver reads them
//! only when a sample is due.
//!
//! The driver follows the core's contract (see [`super::charge_point`]): after every
//! input it sends what `poll_transmit` yields, handles what `poll_event` yields, and
//! sleeps until `poll_timeout`.
//!
//! - **Status** (OCPP 1.6 §4.9): the gun's [`ConnectorStatus`] maps one to one onto
//!   ChargePointStatus, on the gun's connector id. Faulted carries the
//!   ChargePointErrorCode of the node's fault (§7.6), its code as `vendorErrorCode` and
//!   its subject as `info`.
//! - **Authorize** (§4.1, §3.5): the core decides, from the CSMS's answer or, by the
//!   configuration keys, from the Local Authorization List the CSMS sent, the
//!   Authorization Cache and the offline rules (see [`ChargePoint::authorize`]); the
//!   driver hands each decision to the guns that asked about the idTag. The cabinet's
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
//!   [`stop_reason`], unless the driver itself asked for the stop: a StartTransaction.conf
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
//!   store under its identity ([`RedbJournal`]). A journal write is one durable redb
//!   transaction (an fsync, milliseconds on a disk): every call into the core that can write ([`ChargePoint::handle_text`],
//!   `handle_timeout`, the transaction commands) runs under
//!   [`tokio::task::block_in_place`], so the worker's other tasks move to another thread
//!   while the driver waits for the disk (directly on a current-thread runtime).
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
//!   driver started and has not stopped (confirmed by the CSMS, so it has its id); the
//!   control task is asked to stop that gun's session ([`DriverReport::StopSession`]) and
//!   the Stop that follows carries reason Remote. Any other id is Rejected.
//! - **ChangeAvailability** (§5.2): connector N, or 0 for every gun of the dispenser;
//!   an unknown connector is Rejected. A gun without a running transaction gets the
//!   change at once ([`DriverReport::SetAvailable`], the control task applies
//!   `Command::SetAvailable`) and the answer is Accepted; its status then goes to
//!   Unavailable / Available through the usual status path. A gun with a running
//!   transaction keeps it: the change is held in the driver and handed to the control
//!   task when that transaction stops (the controller's `SetAvailable(false)` would cut a
//!   running session), and the answer is Scheduled (for connector 0: Scheduled if any gun
//!   has one). A later change for the same gun replaces a held one. The change is stored
//!   in the journal before the answer, and applied again at the next start ("persistent
//!   across reboots"). Connector 0 reports the dispenser: Unavailable while connector 0 is
//!   Inoperative, Faulted while the dispenser's emergency stop holds a gun, else
//!   Available.
//!   A session that starts between the Accepted decision and the control task applying
//!   Inoperative is stopped by it (with reason Remote).
//! - **RemoteStartTransaction** (§5.11), **Reset** (§5.14), **UnlockConnector** (§5.18),
//!   **TriggerMessage** for MeterValues (§5.17) and **DataTransfer** (§5.5, no vendor
//!   extension: UnknownVendorId): see `requests.rs`.
//! - **ConnectionTimeOut** (§9.1): the controller cancels a preparation (token without
//!   plug-in, or plug-in without token) after it; the driver hands the key's value to the
//!   control task at start and whenever the CSMS changes it
//!   ([`DriverReport::ConnectionTimeout`]).

mod convert;
mod requests;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ringhub_proto::can::messages::LockState;
use ringhub_proto::config::{GunId, TransactionStart};
use ringhub_proto::units::{KilowattHours, Percent};
use tokio::sync::{mpsc, watch};

use self::convert::{measurands, meter_value, truncate, watt_hours};
pub use self::convert::{ocpp_status, stop_reason};
use self::requests::{PendingReset, PendingUnlock};
use super::charge_point::{
    Authority, CallFailure, ChargePoint, Config, Confirmation, Event, OpenTransaction,
    OutgoingCall, TxMessage,
};
use super::messages::central_system::ResetType;
use super::messages::charge_point::{BootNotificationRequest, Reason};
use super::messages::meter::{MeterValue, ReadingContext};
use super::messages::{AuthorizationStatus, IdTagInfo};
use super::rpc::{Frame, SequentialIds};
use super::transport::{Connection, Reconnector, TransportConfig};
use super::types::{CiString, CiString20, DateTime};
use crate::can::ReconnectPolicy;
use crate::connector::{
    AuthDecision, ConnectorStatus, IdToken, LocalFault, MeterView, SegmentSnapshot, StopReason,
};
use crate::options::OcppDispenser;
use crate::store::{RedbJournal, Store};

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
/// How long restart recovery waits for a trusted reading of a cut transaction's gun.
pub const RECOVERY_READING_WAIT: Duration = Duration::from_secs(5);

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

/// What the control task tells a driver.
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

/// What a driver tells the control task.
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

/// A gun a driver serves, as the control task reaches it.
#[derive(Debug)]
struct DriverGun {
    /// The gun.
    gun: GunId,
    /// Its OCPP connector id.
    connector: u32,
    /// When its dispenser's transactions start.
    transaction_start: TransactionStart,
    /// Its driver's command channel.
    commands: mpsc::UnboundedSender<DriverCommand>,
}

/// The control task's side of the drivers: which driver serves which gun, and where
/// their decisions arrive.
#[derive(Debug)]
pub struct Drivers {
    /// Per gun: the driver's command channel and the gun's connector id.
    guns: Vec<DriverGun>,
    /// Decisions and stop requests from every driver.
    pub reports: mpsc::UnboundedReceiver<DriverReport>,
    /// The latest readings of every gun, for every driver.
    readings: watch::Sender<Vec<GunReading>>,
    /// The driver tasks.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drivers {
    /// Starts one driver task per dispenser that has a CSMS URL; they stop when
    /// `shutdown` turns true. Each keeps its journal in `store` under its identity (see
    /// the module docs).
    pub fn start(
        dispensers: &[OcppDispenser],
        store: &Store,
        previous_stop: PreviousStop,
        shutdown: &watch::Receiver<bool>,
    ) -> Self {
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let (readings, readings_rx) = watch::channel(Vec::new());
        let mut guns = Vec::new();
        let mut tasks = Vec::new();
        for dispenser in dispensers {
            let Some(url) = &dispenser.csms_url else {
                tracing::warn!(dispenser = %dispenser.id, "no CSMS URL: the dispenser stays offline");
                continue;
            };
            let (commands_tx, commands) = mpsc::unbounded_channel();
            for &(gun, connector) in &dispenser.guns {
                guns.push(DriverGun {
                    gun,
                    connector,
                    transaction_start: dispenser.transaction_start,
                    commands: commands_tx.clone(),
                });
            }
            let config = Config::new(boot_notification(), dispenser.connectors);
            let ids = Box::new(SequentialIds::new(crate::can::backoff::random_u64()));
            let journal = RedbJournal::new(store.clone(), dispenser.identity.clone());
            let loaded =
                blocking(|| ChargePoint::with_journal(config.clone(), ids, Box::new(journal)));
            let cp = match loaded {
                Ok(cp) => cp,
                Err(error) => {
                    tracing::error!(dispenser = %dispenser.id, %error, "OCPP journal unreadable: this run's transactions are not persisted");
                    ChargePoint::new(
                        config,
                        Box::new(SequentialIds::new(crate::can::backoff::random_u64())),
                    )
                }
            };
            let driver = Driver {
                cp,
                identity: dispenser.identity.clone(),
                pending: VecDeque::new(),
                reports: reports_tx.clone(),
                guns: dispenser.guns.clone(),
                readings: readings_rx.clone(),
                running: BTreeMap::new(),
                scheduled: BTreeMap::new(),
                previous_stop,
                statuses: BTreeMap::new(),
                reset: None,
                unlocks: Vec::new(),
                aligned_at: None,
                faults: BTreeMap::new(),
            };
            let transport = TransportConfig {
                security: dispenser.security.clone(),
                ca_file: dispenser.ca_file.clone(),
                ..TransportConfig::new(url.clone(), dispenser.identity.clone())
            };
            tasks.push(tokio::spawn(driver.run(
                Reconnector::new(transport, ReconnectPolicy::default()),
                commands,
                shutdown.clone(),
            )));
        }
        Self {
            guns,
            reports,
            readings,
            tasks,
        }
    }

    /// Waits for every driver task to end (they end on shutdown).
    pub async fn join(self) {
        for task in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(%error, "OCPP driver task failed");
            }
        }
    }

    /// The driver side of `gun`.
    fn find(&self, gun: GunId) -> Option<&DriverGun> {
        self.guns.iter().find(|g| g.gun == gun)
    }

    /// A session on `gun` reached `moment` (EV connected and authorised, or energy
    /// flowing) with `id_tag` and the meter register at `meter_start`: its transaction
    /// starts if the dispenser starts transactions then.
    pub fn session_started(
        &self,
        gun: GunId,
        moment: TransactionStart,
        id_tag: &str,
        meter_start: KilowattHours,
    ) {
        if let Some(g) = self.find(gun).filter(|g| g.transaction_start == moment) {
            send(
                &g.commands,
                DriverCommand::StartTransaction {
                    connector: g.connector,
                    id_tag: id_tag.to_owned(),
                    meter_start_wh: watt_hours(meter_start),
                },
            );
        }
    }

    /// The session on `gun` ended for `reason` after delivering `energy`.
    pub fn session_ended(&self, gun: GunId, reason: StopReason, energy: KilowattHours) {
        if let Some(g) = self.find(gun) {
            send(
                &g.commands,
                DriverCommand::StopTransaction {
                    connector: g.connector,
                    reason: stop_reason(reason),
                    energy_wh: watt_hours(energy),
                },
            );
        }
    }

    /// Hands over the guns' latest readings; never waits.
    pub fn readings(&self, snapshots: &[SegmentSnapshot]) {
        let readings = snapshots
            .iter()
            .filter_map(|s| s.gun.as_ref())
            .map(|g| GunReading {
                gun: g.gun,
                meter: g.meter,
                soc: g.soc,
                lock: g.lock,
            })
            .collect();
        self.readings.send_replace(readings);
    }

    /// Reports `gun`'s status; a gun no driver serves is ignored.
    pub fn status(&self, gun: GunId, status: ConnectorStatus, fault: Option<LocalFault>) {
        if let Some(g) = self.find(gun) {
            send(
                &g.commands,
                DriverCommand::Status {
                    connector: g.connector,
                    status,
                    fault,
                },
            );
        }
    }

    /// Asks for a decision on `token` at `gun`; it arrives on [`Self::decisions`]. False,
    /// asking nothing, when no driver serves `gun`.
    pub fn authorize(&self, gun: GunId, token: &IdToken) -> bool {
        let Some(g) = self.find(gun) else {
            return false;
        };
        send(
            &g.commands,
            DriverCommand::Authorize {
                gun,
                token: token.clone(),
            },
        );
        true
    }
}

/// Sends without waiting; a driver that has stopped only logs.
fn send(tx: &mpsc::UnboundedSender<DriverCommand>, command: DriverCommand) {
    if tx.send(command).is_err() {
        tracing::warn!("OCPP driver stopped; command dropped");
    }
}

/// The BootNotification of a ringhub dispenser.
fn boot_notification() -> BootNotificationRequest {
    BootNotificationRequest {
        charge_point_vendor: CiString::new("ringhub").expect("7 characters fit 20"),
        charge_point_model: CiString::new("ringhub-dc").expect("10 characters fit 20"),
        charge_point_serial_number: None,
        charge_box_serial_number: None,
        firmware_version: CiString::new(env!("CARGO_PKG_VERSION")).ok(),
        iccid: None,
        imsi: None,
        meter_type: None,
        meter_serial_number: None,
    }
}

/// One dispenser's driver task state (the connection lives in [`Driver::run`]).
struct Driver {
    /// The sans-IO charge point.
    cp: ChargePoint,
    /// The charge point identity, for logs.
    identity: String,
    /// Authorize calls asked and not yet answered, in the order they were queued.
    pending: VecDeque<(GunId, IdToken, CiString20)>,
    /// Where decisions and stop requests go.
    reports: mpsc::UnboundedSender<DriverReport>,
    /// This dispenser's guns and their connector ids.
    guns: Vec<(GunId, u32)>,
    /// The latest readings of every gun.
    readings: watch::Receiver<Vec<GunReading>>,
    /// Per connector: the transaction this driver started and has not stopped.
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
}

/// A transaction the driver started.
#[derive(Debug, Clone)]
struct Running {
    /// Its meterStart, Wh.
    meter_start_wh: i32,
    /// When its last sample was taken (its start, before the first).
    last_sample: Instant,
    /// The driver stopped it (CSMS refused the id tag, Reset, UnlockConnector): the
    /// reason its Stop carries.
    stop_reason: Option<Reason>,
    /// The Transaction.Begin reading of StopTxnSampledData, for the Stop's
    /// transactionData.
    begin: Option<MeterValue>,
}

impl Driver {
    /// Connects, reconnects and drives the core until shutdown or until the control
    /// task drops its senders.
    async fn run(
        mut self,
        mut reconnector: Reconnector,
        mut commands: mpsc::UnboundedReceiver<DriverCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tracing::info!(identity = %self.identity, url = %reconnector.config().url(), "OCPP driver running");
        self.restore_availability();
        self.report_connection_timeout();
        self.report_dispenser_status(Instant::now());
        self.schedule_aligned(Instant::now());
        let cut = self.cp.open_transactions();
        if !cut.is_empty() {
            tokio::select! {
                () = self.recover(cut) => {}
                _ = shutdown.changed() => return,
            }
        }
        // Set once the transport config proved unusable: the dispenser stays offline.
        let mut unusable = false;
        loop {
            // Offline: connect, while commands and timers keep being served.
            let mut connection = {
                let connect = reconnector.connect();
                tokio::pin!(connect);
                loop {
                    let deadline = self.deadline();
                    tokio::select! {
                        result = &mut connect, if !unusable => match result {
                            Ok(connection) => break connection,
                            Err(error) => {
                                tracing::error!(identity = %self.identity, %error, "CSMS unusable; the dispenser stays offline");
                                unusable = true;
                            }
                        },
                        command = commands.recv() => match command {
                            Some(command) => blocking(|| self.handle_command(command)),
                            None => return,
                        },
                        () = sleep_until(deadline) => blocking(|| self.handle_timeout(Instant::now())),
                        _ = shutdown.changed() => return,
                    }
                    self.drain_events();
                }
            };
            tracing::info!(identity = %self.identity, url = connection.url(), "CSMS connected");
            self.cp.handle_connected(Instant::now());
            let mut stop = false;
            let mut reset = false;
            // Online until the connection breaks.
            loop {
                // Events first: answering a CSMS request queues its CALLRESULT.
                if self.drain_events() {
                    reconnector.reset();
                }
                if let Err(error) = self.transmit(&mut connection).await {
                    tracing::warn!(identity = %self.identity, %error, "CSMS send failed");
                    break;
                }
                if stop {
                    break;
                }
                if self.reset_due(Instant::now()) {
                    reset = true;
                    break;
                }
                let deadline = self.deadline();
                tokio::select! {
                    received = connection.recv() => match received {
                        Ok(text) => {
                            blocking(|| self.cp.handle_text(&text, Instant::now()));
                            metrics::counter!(crate::metrics::OCPP_REJECTED, "identity" => self.identity.clone())
                                .absolute(self.cp.rejected_frames());
                        }
                        Err(error) => {
                            tracing::warn!(identity = %self.identity, %error, "CSMS connection lost");
                            break;
                        }
                    },
                    command = commands.recv() => match command {
                        Some(command) => blocking(|| self.handle_command(command)),
                        None => stop = true,
                    },
                    () = sleep_until(deadline) => blocking(|| self.handle_timeout(Instant::now())),
                    _ = shutdown.changed() => stop = true,
                }
            }
            blocking(|| self.cp.handle_disconnected());
            self.drain_events();
            if (stop || reset)
                && let Err(error) = connection.close().await
            {
                tracing::debug!(identity = %self.identity, %error, "CSMS close");
            }
            if stop {
                return;
            }
            if reset {
                let kind = self.reset.take().map(|r| r.kind);
                tracing::info!(identity = %self.identity, ?kind, "reset: connecting again");
                reconnector.reset();
            }
        }
    }

    /// Stops the transactions a restart cut (see the module docs), before anything else.
    async fn recover(&mut self, cut: Vec<OpenTransaction>) {
        let stored = blocking(|| self.cp.journal().load()).unwrap_or_default();
        for open in cut {
            let gun = self
                .guns
                .iter()
                .find(|(_, c)| *c == open.connector)
                .map(|&(g, _)| g);
            let register = match gun {
                Some(gun) => self.trusted_register(gun).await,
                None => None,
            };
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
            let now = Instant::now();
            let timestamp = self.timestamp(now);
            let stopped = blocking(|| {
                self.cp.stop_transaction(
                    open.connector,
                    meter_stop_wh,
                    self.previous_stop.reason(),
                    timestamp,
                    Vec::new(),
                    now,
                )
            });
            match stopped {
                Ok(local) => {
                    tracing::info!(identity = %self.identity, connector = open.connector, local, transaction_id = ?open.transaction_id, meter_stop_wh, reason = ?self.previous_stop.reason(), "transaction cut by a restart stopped");
                }
                Err(error) => {
                    tracing::error!(identity = %self.identity, connector = open.connector, %error, "StopTransaction of a cut transaction not stored");
                }
            }
        }
    }

    /// The trusted meter's register of `gun` in Wh, waiting up to
    /// [`RECOVERY_READING_WAIT`] for one.
    async fn trusted_register(&mut self, gun: GunId) -> Option<i32> {
        let deadline = tokio::time::Instant::now() + RECOVERY_READING_WAIT;
        loop {
            let register = self
                .readings
                .borrow_and_update()
                .iter()
                .find(|r| r.gun == gun)
                .and_then(|r| r.meter)
                .map(|m| watt_hours(m.energy_register));
            if register.is_some() {
                return register;
            }
            match tokio::time::timeout_at(deadline, self.readings.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Sends every frame the core has ready, in order.
    async fn transmit(
        &mut self,
        connection: &mut Connection,
    ) -> Result<(), super::transport::TransportError> {
        while let Some(text) = self.cp.poll_transmit() {
            match Frame::parse(&text) {
                Ok(frame) => connection.send(&frame).await?,
                Err(rejected) => {
                    tracing::error!(identity = %self.identity, %text, error = %rejected.error, "the core produced a frame that does not parse");
                }
            }
        }
        Ok(())
    }

    /// When the core, the next meter sample, a clock-aligned reading, a waiting unlock or
    /// a Soft reset's grace wants the driver.
    fn deadline(&self) -> Option<Instant> {
        let unlock_poll = (!self.unlocks.is_empty()).then(|| Instant::now() + UNLOCK_POLL);
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

    fn handle_timeout(&mut self, now: Instant) {
        self.cp.handle_timeout(now);
        self.check_unlocks(now);
        if self.aligned_at.is_some_and(|at| at <= now) {
            self.send_aligned(now);
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

    /// Sends every gun's clock-aligned reading (§9.1 ClockAlignedDataInterval).
    fn send_aligned(&mut self, now: Instant) {
        let wanted = self.measurands(METER_VALUES_ALIGNED_DATA);
        let timestamp = self.timestamp(now);
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

    /// The wall-clock time at `now`: the CSMS's, else this machine's.
    fn timestamp(&self, now: Instant) -> DateTime {
        self.cp.wall_clock(now).unwrap_or_else(|| {
            DateTime::from_unix_millis(i64::try_from(crate::publish::unix_ms()).unwrap_or(i64::MAX))
        })
    }

    fn handle_command(&mut self, command: DriverCommand) {
        let now = Instant::now();
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
    fn drain_events(&mut self) -> bool {
        let mut answered = false;
        while let Some(event) = self.cp.poll_event() {
            match event {
                Event::Answered { request, outcome } => {
                    answered |= outcome.is_ok();
                    self.handle_answer(request, outcome);
                }
                Event::Request(request) => self.handle_request(request, Instant::now()),
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
                        self.schedule_aligned(Instant::now());
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

    fn decide(&self, gun: GunId, token: IdToken, decision: AuthDecision) {
        self.report(DriverReport::Auth(AuthResult {
            gun,
            token,
            decision,
        }));
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
        self.readings
            .borrow()
            .iter()
            .find(|r| r.gun == gun)
            .copied()
    }

    /// Reports connector 0, the dispenser itself (§4.9: Available, Unavailable or
    /// Faulted): Faulted while the emergency stop of the dispenser holds one of its guns,
    /// Unavailable while ChangeAvailability made connector 0 Inoperative, else Available.
    fn report_dispenser_status(&mut self, now: Instant) {
        let stopped = self
            .faults
            .values()
            .find(|f| f.code == crate::connector::FaultCode::EmergencyStop)
            .cloned();
        let (status, error_code, detail) = match stopped {
            Some(fault) => ocpp_status(ConnectorStatus::Faulted, Some(&fault)),
            None if self.cp.stored_availability().get(&0) == Some(&false) => {
                ocpp_status(ConnectorStatus::Unavailable, None)
            }
            None => ocpp_status(ConnectorStatus::Available, None),
        };
        if let Err(error) = self.cp.set_status(0, status, error_code, detail, now) {
            tracing::error!(identity = %self.identity, %error, "connector 0 status not reported");
        }
    }

    /// Hands ConnectionTimeOut to the control task for every gun.
    fn report_connection_timeout(&self) {
        let seconds = self
            .cp
            .configuration()
            .int(CONNECTION_TIME_OUT)
            .unwrap_or(60);
        let timeout = Duration::from_secs(u64::try_from(seconds).unwrap_or(60));
        for &(gun, _) in &self.guns {
            self.report(DriverReport::ConnectionTimeout { gun, timeout });
        }
    }

    /// Asks the control task to make `connector`'s gun (un)available.
    fn set_available(&self, connector: u32, available: bool) {
        if let Some(&(gun, _)) = self.guns.iter().find(|(_, c)| *c == connector) {
            self.report(DriverReport::SetAvailable { gun, available });
        }
    }

    fn report(&self, report: DriverReport) {
        if self.reports.send(report).is_err() {
            tracing::debug!(identity = %self.identity, "control task gone; report dropped");
        }
    }
}

/// Runs `f`, which may wait for a durable journal write, off the async workers' duty:
/// under [`tokio::task::block_in_place`] on a multi-thread runtime, directly elsewhere.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Sleeps until `deadline`, forever when there is none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}
