//! The IO around [`ChargePoint`]: one tokio task per dispenser identity that owns the
//! sans-IO core and the WebSocket, and talks to the control task by messages only
//! (issue 6: boot, status, authorize, transactions and their meter values).
//!
//! ```text
//!  control task ──DriverCommand (mpsc)──► driver task (per dispenser) ──text──► CSMS
//!       │ ▲ Status, Authorize,             ChargePoint + Reconnector ◄─text───
//!       │ │ StartTransaction, StopTransaction    │
//!       │ └─── DriverReport (mpsc) ◄─────────────┘  Authorize decisions, stop requests
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
//! - **Authorize** (§4.1): IdTagInfo Accepted accepts; every other status rejects. When
//!   the CSMS cannot be asked (not connected, or no answer within the response timeout)
//!   the token is accepted only if LocalAuthorizeOffline is true and the cabinet's local
//!   list holds it (§3.4.4 "Local Authorization List").
//! - **Transactions** (§4.8, §4.10): a session that starts (energy flows) starts a
//!   transaction on the gun's connector with the session's id tag and the trusted meter's
//!   register in Wh as meterStart; the control task picks the id tag (the token's; for a
//!   session without a token, the EV's MAC in upper-case hex when known, else `FREE`).
//!   Timestamps are the CSMS's clock as the core tracks it, or this machine's clock
//!   before the CSMS has told its time. The end of the session stops it at once with
//!   meterStop = meterStart + the session's energy in Wh and the reason of
//!   [`stop_reason`]. A StartTransaction.conf whose idTagInfo is not Accepted makes the
//!   driver ask the control task to stop the session ([`DriverReport::StopSession`]), and
//!   that transaction's Stop carries DeAuthorized.
//! - **MeterValues** (§4.7): while a transaction runs, every MeterValueSampleInterval
//!   seconds (read at every sample, so a change takes effect at once; 0 turns sampling
//!   off), the connector's latest reading goes out as one MeterValue with context
//!   Sample.Periodic: Energy.Active.Import.Register (Wh), Power.Active.Import (W, the
//!   trusted meter's voltage × current), Current.Import (A), Voltage (V), and SoC (%,
//!   location EV) when the EV told it. OCPP 1.6 SampledValue has no field for the
//!   instrument, so the meter the node trusted is given by `location`: **Outlet** for the
//!   PLC's calibrated meter in the dispenser, **Body** for the cabinet's DC shunt. No
//!   sample is sent while the node trusts no meter.
//! - **Persistence** (issue 6): the charge point of the cabinet's first dispenser with a
//!   CSMS URL keeps its transaction journal in the node's redb store ([`RedbJournal`]).
//!   The journal's keys are not per identity, so a second dispenser of the same cabinet
//!   gets an in-memory journal (logged); the demo has one dispenser per cabinet. A
//!   journal write is one durable redb transaction (an fsync, milliseconds on a disk):
//!   every call into the core that can write ([`ChargePoint::handle_text`],
//!   `handle_timeout`, the transaction commands) runs under
//!   [`tokio::task::block_in_place`], so the worker's other tasks move to another thread
//!   while the driver waits for the disk (directly on a current-thread runtime).
//! - **Restart recovery** (§4.10): at start, every transaction the journal still has open
//!   was cut by the restart (the node does not resume sessions), and is stopped before
//!   any command is served, so before any new Start on its connector, with reason
//!   **PowerLoss**: the node cannot tell a SIGKILL or a power cut from a graceful stop,
//!   since it keeps no clean-shutdown marker, and a graceful stop does not end sessions
//!   either. meterStop is the trusted meter's register of the connector's gun, waited for
//!   up to [`RECOVERY_READING_WAIT`]; without one, the journaled Start's meterStart when
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
//!   has one). A later change for the same gun replaces a held one. Connector 0's own
//!   StatusNotification is not sent, and availability is not persisted across a restart.
//!   A session that starts between the Accepted decision and the control task applying
//!   Inoperative is stopped by it (with reason Remote).
//! - **Other CALLs from the CSMS** that need the node (remote start, reset, unlock, local
//!   list, cache, vendor data) are refused with the status the spec has for "not carried
//!   out" until the node implements them.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ringhub_proto::can::messages::MeterSource;
use ringhub_proto::config::GunId;
use ringhub_proto::units::{KilowattHours, Percent};
use tokio::sync::{mpsc, watch};

use super::charge_point::{
    CallFailure, ChargePoint, Config, Confirmation, CsmsRequest, Event, OutgoingCall, Responder,
    StatusDetail,
};
use super::charge_point::{OpenTransaction, TxMessage};
use super::messages::AuthorizationStatus;
use super::messages::central_system::{
    AcceptedRejected, AvailabilityStatus, AvailabilityType, ChangeAvailabilityRequest,
    ChangeAvailabilityResponse, ClearCacheResponse, GetLocalListVersionResponse,
    RemoteStartTransactionResponse, RemoteStopTransactionRequest, RemoteStopTransactionResponse,
    ResetResponse, SendLocalListResponse, TriggerMessageResponse, TriggerMessageStatus,
    UnlockConnectorResponse, UnlockStatus, UpdateStatus,
};
use super::messages::charge_point::{
    BootNotificationRequest, ChargePointErrorCode, ChargePointStatus, DataTransferResponse,
    DataTransferStatus, Reason,
};
use super::messages::meter::{
    Location, Measurand, MeterValue, ReadingContext, SampledValue, UnitOfMeasure, ValueFormat,
};
use super::rpc::{Frame, SequentialIds};
use super::transport::{Connection, Reconnector, TransportConfig};
use super::types::{CiString, CiString20, DateTime};
use crate::can::ReconnectPolicy;
use crate::connector::{
    AuthDecision, ConnectorStatus, FaultCode, IdToken, LocalFault, MeterView, SegmentSnapshot,
    StopReason,
};
use crate::options::OcppDispenser;
use crate::store::{RedbJournal, Store};

/// The configuration key that lets the local list decide while the CSMS is unreachable.
const LOCAL_AUTHORIZE_OFFLINE: &str = "LocalAuthorizeOffline";
/// The configuration key with the seconds between transaction meter samples.
const METER_VALUE_SAMPLE_INTERVAL: &str = "MeterValueSampleInterval";
/// The id tag of a session that started without a token and without a known EV MAC.
pub const FREE_ID_TAG: &str = "FREE";
/// How long restart recovery waits for a trusted reading of a cut transaction's gun.
pub const RECOVERY_READING_WAIT: Duration = Duration::from_secs(5);

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

/// The control task's side of the drivers: which driver serves which gun, and where
/// their decisions arrive.
#[derive(Debug)]
pub struct Drivers {
    /// Per gun: the driver's command channel and the gun's connector id.
    guns: Vec<(GunId, u32, mpsc::UnboundedSender<DriverCommand>)>,
    /// Decisions and stop requests from every driver.
    pub reports: mpsc::UnboundedReceiver<DriverReport>,
    /// The latest readings of every gun, for every driver.
    readings: watch::Sender<Vec<GunReading>>,
}

impl Drivers {
    /// Starts one driver task per dispenser that has a CSMS URL; they stop when
    /// `shutdown` turns true. `local_list` serves LocalAuthorizeOffline; the first of
    /// them keeps its transaction journal in `store` (see the module docs).
    pub fn start(
        dispensers: &[OcppDispenser],
        local_list: &[String],
        store: &Store,
        shutdown: &watch::Receiver<bool>,
    ) -> Self {
        let mut journal = Some(RedbJournal::new(store.clone()));
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let (readings, readings_rx) = watch::channel(Vec::new());
        let mut guns = Vec::new();
        for dispenser in dispensers {
            let Some(url) = &dispenser.csms_url else {
                tracing::warn!(dispenser = %dispenser.id, "no CSMS URL: the dispenser stays offline");
                continue;
            };
            let (commands_tx, commands) = mpsc::unbounded_channel();
            for &(gun, connector) in &dispenser.guns {
                guns.push((gun, connector, commands_tx.clone()));
            }
            let config = Config::new(boot_notification(), dispenser.connectors);
            let ids = Box::new(SequentialIds::new(crate::can::backoff::random_u64()));
            let cp = match journal.take() {
                Some(journal) => {
                    let loaded = blocking(|| {
                        ChargePoint::with_journal(config.clone(), ids, Box::new(journal))
                    });
                    match loaded {
                        Ok(cp) => cp,
                        Err(error) => {
                            tracing::error!(dispenser = %dispenser.id, %error, "transaction journal unreadable: this run's transactions are not persisted");
                            ChargePoint::new(
                                config,
                                Box::new(SequentialIds::new(crate::can::backoff::random_u64())),
                            )
                        }
                    }
                }
                None => {
                    tracing::warn!(dispenser = %dispenser.id, "the store holds one dispenser's journal: this one's transactions are not persisted");
                    ChargePoint::new(config, ids)
                }
            };
            let driver = Driver {
                cp,
                identity: dispenser.identity.clone(),
                local_list: local_list.to_vec(),
                pending: VecDeque::new(),
                reports: reports_tx.clone(),
                guns: dispenser.guns.clone(),
                readings: readings_rx.clone(),
                running: BTreeMap::new(),
                scheduled: BTreeMap::new(),
            };
            let transport = TransportConfig::new(url.clone(), dispenser.identity.clone());
            tokio::spawn(driver.run(
                Reconnector::new(transport, ReconnectPolicy::default()),
                commands,
                shutdown.clone(),
            ));
        }
        Self {
            guns,
            reports,
            readings,
        }
    }

    /// The gun's connector and its driver.
    fn find(&self, gun: GunId) -> Option<(u32, &mpsc::UnboundedSender<DriverCommand>)> {
        self.guns
            .iter()
            .find(|(g, ..)| *g == gun)
            .map(|(_, connector, tx)| (*connector, tx))
    }

    /// A session started on `gun` with `id_tag` and the meter register at `meter_start`.
    pub fn session_started(&self, gun: GunId, id_tag: &str, meter_start: KilowattHours) {
        if let Some((connector, tx)) = self.find(gun) {
            send(
                tx,
                DriverCommand::StartTransaction {
                    connector,
                    id_tag: id_tag.to_owned(),
                    meter_start_wh: watt_hours(meter_start),
                },
            );
        }
    }

    /// The session on `gun` ended for `reason` after delivering `energy`.
    pub fn session_ended(&self, gun: GunId, reason: StopReason, energy: KilowattHours) {
        if let Some((connector, tx)) = self.find(gun) {
            send(
                tx,
                DriverCommand::StopTransaction {
                    connector,
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
            })
            .collect();
        self.readings.send_replace(readings);
    }

    /// Reports `gun`'s status; a gun no driver serves is ignored.
    pub fn status(&self, gun: GunId, status: ConnectorStatus, fault: Option<LocalFault>) {
        if let Some((_, connector, tx)) = self.guns.iter().find(|(g, ..)| *g == gun) {
            send(
                tx,
                DriverCommand::Status {
                    connector: *connector,
                    status,
                    fault,
                },
            );
        }
    }

    /// Asks for a decision on `token` at `gun`; it arrives on [`Self::decisions`]. False,
    /// asking nothing, when no driver serves `gun`.
    pub fn authorize(&self, gun: GunId, token: &IdToken) -> bool {
        let Some((.., tx)) = self.guns.iter().find(|(g, ..)| *g == gun) else {
            return false;
        };
        send(
            tx,
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
    /// The cabinet's local list, for LocalAuthorizeOffline.
    local_list: Vec<String>,
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
}

/// A transaction the driver started.
#[derive(Debug, Clone, Copy)]
struct Running {
    /// Its meterStart, Wh.
    meter_start_wh: i32,
    /// When its last sample was taken (its start, before the first).
    last_sample: Instant,
    /// The CSMS refused its id tag: its Stop says DeAuthorized.
    deauthorized: bool,
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
            if stop {
                if let Err(error) = connection.close().await {
                    tracing::debug!(identity = %self.identity, %error, "CSMS close");
                }
                return;
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
                    Reason::PowerLoss,
                    timestamp,
                    now,
                )
            });
            match stopped {
                Ok(local) => {
                    tracing::info!(identity = %self.identity, connector = open.connector, local, transaction_id = ?open.transaction_id, meter_stop_wh, "transaction cut by a restart stopped: PowerLoss");
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

    /// When the core or the next meter sample wants the driver.
    fn deadline(&self) -> Option<Instant> {
        self.cp
            .poll_timeout()
            .into_iter()
            .chain(self.next_sample())
            .min()
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
        let Some(interval) = self.sample_interval() else {
            return;
        };
        let due: Vec<u32> = self
            .running
            .iter()
            .filter(|(_, r)| r.last_sample + interval <= now)
            .map(|(&connector, _)| connector)
            .collect();
        let timestamp = self.timestamp(now);
        for connector in due {
            if let Some(running) = self.running.get_mut(&connector) {
                running.last_sample = now;
            }
            let Some(&(gun, _)) = self.guns.iter().find(|(_, c)| *c == connector) else {
                continue;
            };
            let reading = self
                .readings
                .borrow()
                .iter()
                .find(|r| r.gun == gun)
                .copied();
            let Some(value) = reading.and_then(|r| meter_value(&r, timestamp.clone())) else {
                tracing::debug!(identity = %self.identity, connector, "no trusted reading: sample skipped");
                continue;
            };
            if let Err(error) = self.cp.meter_values(connector, vec![value], now) {
                tracing::error!(identity = %self.identity, connector, %error, "MeterValues not sent");
            }
        }
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
                let (status, error_code, detail) = ocpp_status(status, fault.as_ref());
                if let Err(error) = self
                    .cp
                    .set_status(connector, status, error_code, detail, now)
                {
                    tracing::error!(identity = %self.identity, %error, "status not reported");
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
                                deauthorized: false,
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
                let reason = if running.deauthorized {
                    Reason::DeAuthorized
                } else {
                    reason
                };
                let meter_stop_wh = running.meter_start_wh.saturating_add(energy_wh);
                let timestamp = self.timestamp(now);
                match self
                    .cp
                    .stop_transaction(connector, meter_stop_wh, reason, timestamp, now)
                {
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
                Event::Request(request) => self.handle_request(request),
                Event::ConfigurationChanged { key, value } => {
                    tracing::info!(identity = %self.identity, key, %value, "configuration changed");
                }
                Event::TransactionStarted {
                    connector,
                    local,
                    transaction_id,
                    id_tag_info,
                } => {
                    answered = true;
                    tracing::info!(identity = %self.identity, connector, local, transaction_id, status = ?id_tag_info.status, "StartTransaction confirmed");
                    if id_tag_info.status != AuthorizationStatus::Accepted {
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
            (OutgoingCall::Authorize(request), outcome) => {
                let Some(index) = self
                    .pending
                    .iter()
                    .position(|(.., tag)| *tag == request.id_tag)
                else {
                    tracing::warn!(identity = %self.identity, id_tag = %request.id_tag, "Authorize answered that nobody asked");
                    return;
                };
                let Some((gun, token, _)) = self.pending.remove(index) else {
                    return;
                };
                let decision = match outcome {
                    Ok(Confirmation::Authorize(conf)) => {
                        tracing::info!(identity = %self.identity, %gun, %token, status = ?conf.id_tag_info.status, "Authorize answered");
                        if conf.id_tag_info.status == AuthorizationStatus::Accepted {
                            AuthDecision::Accepted
                        } else {
                            AuthDecision::Rejected
                        }
                    }
                    Err(failure @ (CallFailure::NotConnected | CallFailure::Timeout)) => {
                        let offline = self
                            .cp
                            .configuration()
                            .bool(LOCAL_AUTHORIZE_OFFLINE)
                            .unwrap_or(false);
                        let listed = self
                            .local_list
                            .iter()
                            .any(|t| t.eq_ignore_ascii_case(token.id_tag()));
                        tracing::info!(identity = %self.identity, %gun, %token, %failure, offline, listed, "CSMS unreachable: local list decides");
                        if offline && listed {
                            AuthDecision::Accepted
                        } else {
                            AuthDecision::Rejected
                        }
                    }
                    Ok(other) => {
                        tracing::warn!(identity = %self.identity, ?other, "Authorize got another call's confirmation");
                        AuthDecision::Rejected
                    }
                    Err(failure) => {
                        tracing::warn!(identity = %self.identity, %gun, %token, %failure, "Authorize failed");
                        AuthDecision::Rejected
                    }
                };
                self.decide(gun, token, decision);
            }
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
        let Some(&(gun, _)) = self.guns.iter().find(|(_, c)| *c == connector) else {
            return;
        };
        if let Some(running) = self.running.get_mut(&connector) {
            running.deauthorized = true;
        }
        tracing::info!(identity = %self.identity, %gun, connector, "idTag refused by the CSMS: stopping the session");
        self.report(DriverReport::StopSession { gun });
    }

    /// RemoteStopTransaction (see the module docs); true if the answer was sent.
    fn remote_stop(
        &mut self,
        request: &RemoteStopTransactionRequest,
        responder: Responder<RemoteStopTransactionRequest>,
    ) -> bool {
        let transaction_id = request.transaction_id;
        let gun = self
            .cp
            .open_transactions()
            .into_iter()
            .find(|open| {
                open.transaction_id == Some(transaction_id)
                    && self.running.contains_key(&open.connector)
            })
            .and_then(|open| self.guns.iter().find(|(_, c)| *c == open.connector))
            .map(|&(gun, _)| gun);
        let status = match gun {
            Some(gun) => {
                tracing::info!(identity = %self.identity, %gun, transaction_id, "RemoteStopTransaction: stopping the session");
                self.report(DriverReport::StopSession { gun });
                AcceptedRejected::Accepted
            }
            None => {
                tracing::info!(identity = %self.identity, transaction_id, "RemoteStopTransaction of no running transaction: rejected");
                AcceptedRejected::Rejected
            }
        };
        self.cp
            .answer(responder, &RemoteStopTransactionResponse { status })
    }

    /// ChangeAvailability (see the module docs); true if the answer was sent.
    fn change_availability(
        &mut self,
        request: &ChangeAvailabilityRequest,
        responder: Responder<ChangeAvailabilityRequest>,
    ) -> bool {
        let available = request.kind == AvailabilityType::Operative;
        let connectors: Vec<u32> = self
            .guns
            .iter()
            .map(|&(_, c)| c)
            .filter(|&c| request.connector_id == 0 || c == request.connector_id)
            .collect();
        let status = if connectors.is_empty() {
            tracing::info!(identity = %self.identity, connector = request.connector_id, "ChangeAvailability of an unknown connector: rejected");
            AvailabilityStatus::Rejected
        } else {
            let mut status = AvailabilityStatus::Accepted;
            for connector in connectors {
                if self.running.contains_key(&connector) {
                    self.scheduled.insert(connector, available);
                    status = AvailabilityStatus::Scheduled;
                } else {
                    self.scheduled.remove(&connector);
                    self.set_available(connector, available);
                }
            }
            tracing::info!(identity = %self.identity, connector = request.connector_id, available, ?status, "ChangeAvailability");
            status
        };
        self.cp
            .answer(responder, &ChangeAvailabilityResponse { status })
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

    /// Carries out a CALL from the CSMS, or answers one this slice does not carry out
    /// with the spec's refusal.
    fn handle_request(&mut self, request: CsmsRequest) {
        if !matches!(
            request,
            CsmsRequest::ChangeAvailability(..) | CsmsRequest::RemoteStopTransaction(..)
        ) {
            tracing::info!(identity = %self.identity, ?request, "CSMS request refused: not supported yet");
        }
        let rejected = AcceptedRejected::Rejected;
        match request {
            CsmsRequest::ChangeAvailability(request, r) => self.change_availability(&request, r),
            CsmsRequest::ClearCache(_, r) => {
                self.cp.answer(r, &ClearCacheResponse { status: rejected })
            }
            CsmsRequest::DataTransfer(_, r) => self.cp.answer(
                r,
                &DataTransferResponse {
                    status: DataTransferStatus::UnknownVendorId,
                    data: None,
                },
            ),
            CsmsRequest::GetLocalListVersion(_, r) => self
                .cp
                .answer(r, &GetLocalListVersionResponse { list_version: 0 }),
            CsmsRequest::RemoteStartTransaction(_, r) => self
                .cp
                .answer(r, &RemoteStartTransactionResponse { status: rejected }),
            CsmsRequest::RemoteStopTransaction(request, r) => self.remote_stop(&request, r),
            CsmsRequest::Reset(_, r) => self.cp.answer(r, &ResetResponse { status: rejected }),
            CsmsRequest::SendLocalList(_, r) => self.cp.answer(
                r,
                &SendLocalListResponse {
                    status: UpdateStatus::NotSupported,
                },
            ),
            CsmsRequest::TriggerMessage(_, r) => self.cp.answer(
                r,
                &TriggerMessageResponse {
                    status: TriggerMessageStatus::NotImplemented,
                },
            ),
            CsmsRequest::UnlockConnector(_, r) => self.cp.answer(
                r,
                &UnlockConnectorResponse {
                    status: UnlockStatus::NotSupported,
                },
            ),
        };
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

/// The OCPP Reason (§7.40) of a session's end.
///
/// - EvStopped → **Local**: the EV ended the session itself (full, or its driver stopped
///   it from the vehicle) with the cable still in: a regular, user-side termination at
///   the charge point, which is what Local means ("stopped locally on request of the
///   user"). EVDisconnected is kept for a cable that was actually pulled.
/// - Unplugged → EVDisconnected; Remote → Remote (also an operator's stop); Rejected →
///   DeAuthorized; Fault(EmergencyStop) → EmergencyStop; every other fault, a failed
///   high-level session and a pilot fault → Other.
pub fn stop_reason(reason: StopReason) -> Reason {
    match reason {
        StopReason::EvStopped => Reason::Local,
        StopReason::Unplugged => Reason::EvDisconnected,
        StopReason::Remote => Reason::Remote,
        StopReason::Rejected => Reason::DeAuthorized,
        StopReason::Fault(FaultCode::EmergencyStop) => Reason::EmergencyStop,
        StopReason::Fault(_) | StopReason::HlcFailed(_) | StopReason::PilotFault(_) => {
            Reason::Other
        }
    }
}

/// Energy in whole Wh, saturating.
fn watt_hours(energy: KilowattHours) -> i32 {
    // `as` saturates, and maps NaN to 0.
    (energy.0 * 1000.0).round() as i32
}

/// The periodic sample of a reading; none without a trusted meter.
fn meter_value(reading: &GunReading, timestamp: DateTime) -> Option<MeterValue> {
    let meter = reading.meter?;
    let location = match meter.source {
        MeterSource::PlcMeter => Location::Outlet,
        MeterSource::Shunt => Location::Body,
    };
    let sample = |value: String, measurand, unit, location| SampledValue {
        value,
        context: Some(ReadingContext::SamplePeriodic),
        format: Some(ValueFormat::Raw),
        measurand: Some(measurand),
        phase: None,
        location: Some(location),
        unit: Some(unit),
    };
    let mut sampled_value = vec![
        sample(
            watt_hours(meter.energy_register).to_string(),
            Measurand::EnergyActiveImportRegister,
            UnitOfMeasure::Wh,
            location,
        ),
        sample(
            format!("{:.0}", meter.voltage.0 * meter.current.0),
            Measurand::PowerActiveImport,
            UnitOfMeasure::W,
            location,
        ),
        sample(
            format!("{:.1}", meter.current.0),
            Measurand::CurrentImport,
            UnitOfMeasure::A,
            location,
        ),
        sample(
            format!("{:.1}", meter.voltage.0),
            Measurand::Voltage,
            UnitOfMeasure::V,
            location,
        ),
    ];
    if let Some(soc) = reading.soc {
        sampled_value.push(sample(
            soc.0.to_string(),
            Measurand::SoC,
            UnitOfMeasure::Percent,
            Location::Ev,
        ));
    }
    Some(MeterValue {
        timestamp,
        sampled_value,
    })
}

/// The StatusNotification fields for a gun's status and the fault behind it.
pub fn ocpp_status(
    status: ConnectorStatus,
    fault: Option<&LocalFault>,
) -> (ChargePointStatus, ChargePointErrorCode, StatusDetail) {
    let status = match status {
        ConnectorStatus::Available => ChargePointStatus::Available,
        ConnectorStatus::Preparing => ChargePointStatus::Preparing,
        ConnectorStatus::Charging => ChargePointStatus::Charging,
        ConnectorStatus::SuspendedEv => ChargePointStatus::SuspendedEv,
        ConnectorStatus::SuspendedEvse => ChargePointStatus::SuspendedEvse,
        ConnectorStatus::Finishing => ChargePointStatus::Finishing,
        ConnectorStatus::Unavailable => ChargePointStatus::Unavailable,
        ConnectorStatus::Faulted => ChargePointStatus::Faulted,
    };
    if status != ChargePointStatus::Faulted {
        return (
            status,
            ChargePointErrorCode::NoError,
            StatusDetail::default(),
        );
    }
    let Some(fault) = fault else {
        return (
            status,
            ChargePointErrorCode::InternalError,
            StatusDetail::default(),
        );
    };
    let detail = StatusDetail {
        info: CiString::new(truncate(&fault.subject, 50)).ok(),
        vendor_error_code: CiString::new(fault.code.as_str()).ok(),
    };
    (status, error_code(fault.code), detail)
}

/// The ChargePointErrorCode (OCPP 1.6 §7.6) closest to a node fault.
fn error_code(code: FaultCode) -> ChargePointErrorCode {
    match code {
        FaultCode::ContactorWelded
        | FaultCode::ContactorFailedToClose
        | FaultCode::OpenUnderLoad => ChargePointErrorCode::PowerSwitchFailure,
        FaultCode::LockFailure => ChargePointErrorCode::ConnectorLockFailure,
        FaultCode::MeterFailure | FaultCode::MeterDisagreement => {
            ChargePointErrorCode::PowerMeterFailure
        }
        FaultCode::IsolationFault => ChargePointErrorCode::GroundFailure,
        FaultCode::ModuleOvertemp => ChargePointErrorCode::HighTemperature,
        FaultCode::PlcSilent | FaultCode::ModuleSilent | FaultCode::ModuleFault => {
            ChargePointErrorCode::InternalError
        }
        FaultCode::EmergencyStop => ChargePointErrorCode::OtherError,
    }
}

/// At most `max` characters of `text`.
fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fault(code: FaultCode) -> LocalFault {
        LocalFault {
            code,
            subject: "segment 0 gc".into(),
            detail: "feedback closed 300 ms after open".into(),
            raised_at: Duration::from_secs(1),
        }
    }

    #[test]
    fn statuses_map_one_to_one_without_error() {
        let (status, code, detail) = ocpp_status(ConnectorStatus::Preparing, None);
        assert_eq!(status, ChargePointStatus::Preparing);
        assert_eq!(code, ChargePointErrorCode::NoError);
        assert_eq!(detail, StatusDetail::default());
        let (status, ..) = ocpp_status(ConnectorStatus::SuspendedEvse, None);
        assert_eq!(status, ChargePointStatus::SuspendedEvse);
    }

    #[test]
    fn faulted_carries_the_fault() {
        let (status, code, detail) = ocpp_status(
            ConnectorStatus::Faulted,
            Some(&fault(FaultCode::ContactorWelded)),
        );
        assert_eq!(status, ChargePointStatus::Faulted);
        assert_eq!(code, ChargePointErrorCode::PowerSwitchFailure);
        assert_eq!(
            detail.vendor_error_code.map(|c| c.to_string()).as_deref(),
            Some("CONTACTOR_WELDED")
        );
        assert_eq!(
            detail.info.map(|c| c.to_string()).as_deref(),
            Some("segment 0 gc")
        );
        let (_, code, _) = ocpp_status(ConnectorStatus::Faulted, None);
        assert_eq!(code, ChargePointErrorCode::InternalError);
    }

    #[test]
    fn stop_reasons_map_to_ocpp() {
        assert_eq!(stop_reason(StopReason::EvStopped), Reason::Local);
        assert_eq!(stop_reason(StopReason::Unplugged), Reason::EvDisconnected);
        assert_eq!(stop_reason(StopReason::Remote), Reason::Remote);
        assert_eq!(stop_reason(StopReason::Rejected), Reason::DeAuthorized);
        assert_eq!(
            stop_reason(StopReason::Fault(FaultCode::EmergencyStop)),
            Reason::EmergencyStop
        );
        assert_eq!(
            stop_reason(StopReason::Fault(FaultCode::IsolationFault)),
            Reason::Other
        );
    }

    #[test]
    fn samples_carry_the_trusted_meter_as_location() {
        use ringhub_proto::units::{Amps, Volts};
        let reading = |source| GunReading {
            gun: GunId(0),
            meter: Some(MeterView {
                source,
                voltage: Volts(400.0),
                current: Amps(100.0),
                energy_register: KilowattHours(12.3456),
            }),
            soc: Some(Percent(51)),
        };
        let at = DateTime::from_unix_millis(1_700_000_000_000);
        let value = meter_value(&reading(MeterSource::PlcMeter), at.clone()).expect("a sample");
        let seen: Vec<_> = value
            .sampled_value
            .iter()
            .map(|v| (v.measurand, v.value.as_str(), v.unit, v.location))
            .collect();
        assert_eq!(
            seen,
            [
                (
                    Some(Measurand::EnergyActiveImportRegister),
                    "12346",
                    Some(UnitOfMeasure::Wh),
                    Some(Location::Outlet)
                ),
                (
                    Some(Measurand::PowerActiveImport),
                    "40000",
                    Some(UnitOfMeasure::W),
                    Some(Location::Outlet)
                ),
                (
                    Some(Measurand::CurrentImport),
                    "100.0",
                    Some(UnitOfMeasure::A),
                    Some(Location::Outlet)
                ),
                (
                    Some(Measurand::Voltage),
                    "400.0",
                    Some(UnitOfMeasure::V),
                    Some(Location::Outlet)
                ),
                (
                    Some(Measurand::SoC),
                    "51",
                    Some(UnitOfMeasure::Percent),
                    Some(Location::Ev)
                ),
            ]
        );
        assert!(
            value
                .sampled_value
                .iter()
                .all(|v| v.context == Some(ReadingContext::SamplePeriodic))
        );
        let shunt = meter_value(&reading(MeterSource::Shunt), at.clone()).expect("a sample");
        assert_eq!(shunt.sampled_value[0].location, Some(Location::Body));
        let unmetered = GunReading {
            meter: None,
            ..reading(MeterSource::Shunt)
        };
        assert_eq!(meter_value(&unmetered, at), None);
    }
}
