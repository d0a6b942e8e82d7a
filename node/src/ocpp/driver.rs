//! The IO around [`Dispenser`]: one tokio task per dispenser identity that owns the
//! sans-IO dispenser (and its [`ChargePoint`]) and the WebSocket, and talks to the
//! control task by messages only (issue 6).
//!
//! ```text
//!  control task ──DriverCommand (mpsc)──► driver task (per dispenser) ──text──► CSMS
//!       │ ▲ Status, Authorize,             Dispenser + Reconnector ◄─text───
//!       │ │ StartTransaction, StopTransaction    │
//!       │ └─── DriverReport (mpsc) ◄─────────────┘  Authorize decisions, stop requests,
//!       │                                            remote starts, unlocks, availability
//!       └───── gun readings (watch, every snapshot hand-over) ──► MeterValues samples
//! ```
//!
//! The control task never awaits the CSMS: it sends a command and goes on; the decision
//! of an Authorize comes back later as a [`DriverReport`] it selects on. Readings go
//! through a watch: the control task overwrites the latest ones, and a driver hands them
//! to its dispenser before every input.
//!
//! The task follows the sans-IO contract: after every input it forwards the dispenser's
//! reports, sends what the charge point's `poll_transmit` yields, and sleeps until the
//! dispenser's `poll_timeout`. What the dispenser does is in [`super::dispenser`].
//!
//! - **Disk**: a journal write is one durable redb transaction (an fsync, milliseconds on
//!   a disk). Every input that can write it runs under [`tokio::task::block_in_place`],
//!   so the worker's other tasks move to another thread while the driver waits for the
//!   disk (directly on a current-thread runtime).
//! - **Restart recovery**: before the first connection the task waits up to
//!   [`RECOVERY_READING_WAIT`] for a trusted reading of every gun whose transaction the
//!   restart cut, then lets the dispenser stop them.
//! - **Reset**: when the dispenser says a Reset is due, the task closes the connection
//!   and connects again at once (a new BootNotification).
//! - **Shutdown**: the task sends what the charge point has ready, closes the connection
//!   and returns, however silent the CSMS is: [`Connection::send`] gives up after
//!   [`SEND_TIMEOUT`](super::transport::SEND_TIMEOUT) and ends the connection like any
//!   lost one, [`Connection::close`] after
//!   [`CLOSE_TIMEOUT`](super::transport::CLOSE_TIMEOUT). Every journal write happens inside `Driver::input`, before the frames
//!   it produced are sent, so giving up on the CSMS never cuts one short, and
//!   [`Drivers::join`] returns only once every write is done.

use std::time::{Duration, Instant};

use ringhub_proto::config::{GunId, TransactionStart};
use ringhub_proto::units::KilowattHours;
use tokio::sync::{mpsc, watch};

use super::charge_point::{ChargePoint, Config};
pub use super::dispenser::{
    AuthResult, DriverCommand, DriverReport, FREE_ID_TAG, GunReading, PreviousStop, SiteFault,
    ocpp_status, stop_reason,
};
use super::dispenser::{Dispenser, watt_hours};
use super::messages::charge_point::BootNotificationRequest;
use super::rpc::{Frame, SequentialIds};
use super::transport::{Connection, Reconnector, TransportConfig, TransportError};
use super::types::CiString;
use crate::can::ReconnectPolicy;
use crate::connector::{ConnectorStatus, IdToken, LocalFault, SegmentSnapshot, StopReason};
use crate::options::OcppDispenser;
use crate::store::{RedbJournal, Store};

/// How long restart recovery waits for a trusted reading of a cut transaction's gun.
pub const RECOVERY_READING_WAIT: Duration = Duration::from_secs(5);

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
        for spec in dispensers {
            let Some(url) = &spec.csms_url else {
                tracing::warn!(dispenser = %spec.id, "no CSMS URL: the dispenser stays offline");
                continue;
            };
            let (commands_tx, commands) = mpsc::unbounded_channel();
            for &(gun, connector) in &spec.guns {
                guns.push(DriverGun {
                    gun,
                    connector,
                    transaction_start: spec.transaction_start,
                    commands: commands_tx.clone(),
                });
            }
            let config = Config::new(boot_notification(), spec.connectors);
            let ids = Box::new(SequentialIds::new(crate::can::backoff::random_u64()));
            let journal = RedbJournal::new(store.clone(), spec.identity.clone());
            let loaded =
                blocking(|| ChargePoint::with_journal(config.clone(), ids, Box::new(journal)));
            let cp = match loaded {
                Ok(cp) => cp,
                Err(error) => {
                    tracing::error!(dispenser = %spec.id, %error, "OCPP journal unreadable: this run's transactions are not persisted");
                    ChargePoint::new(
                        config,
                        Box::new(SequentialIds::new(crate::can::backoff::random_u64())),
                    )
                }
            };
            let dispenser = Dispenser::new(
                cp,
                spec.identity.clone(),
                spec.guns.clone(),
                previous_stop,
                (Instant::now(), local_unix_ms()),
            );
            let driver = Driver {
                dispenser,
                reports: reports_tx.clone(),
                readings: readings_rx.clone(),
                answered: false,
            };
            let transport = TransportConfig {
                security: spec.security.clone(),
                ca_file: spec.ca_file.clone(),
                ..TransportConfig::new(url.clone(), spec.identity.clone())
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

    /// Reports the hub- or cabinet-wide latch that holds this cabinet now, if any, to
    /// every dispenser (each reports it on its connector 0 when it changes).
    pub fn site_fault(&self, fault: Option<&SiteFault>) {
        for g in &self.guns {
            send(&g.commands, DriverCommand::SiteFault(fault.cloned()));
        }
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

/// One dispenser's task state (the connection lives in [`Driver::run`]).
struct Driver {
    /// The sans-IO dispenser.
    dispenser: Dispenser,
    /// Where its reports go.
    reports: mpsc::UnboundedSender<DriverReport>,
    /// The latest readings of every gun.
    readings: watch::Receiver<Vec<GunReading>>,
    /// The CSMS answered a call since the connection backoff was last reset.
    answered: bool,
}

impl Driver {
    /// Connects, reconnects and drives the dispenser until shutdown or until the control
    /// task drops its senders.
    async fn run(
        mut self,
        mut reconnector: Reconnector,
        mut commands: mpsc::UnboundedReceiver<DriverCommand>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let identity = self.dispenser.identity().to_owned();
        tracing::info!(%identity, url = %reconnector.config().url(), "OCPP driver running");
        let connected =
            metrics::gauge!(crate::metrics::OCPP_CONNECTED, "identity" => identity.clone());
        connected.set(0.0);
        let cut = self.input(|d, now| d.start(now));
        if !cut.is_empty() {
            let guns: Vec<GunId> = cut.iter().map(|&(gun, _)| gun).collect();
            tokio::select! {
                () = self.wait_for_registers(&guns) => {}
                _ = shutdown.changed() => return,
            }
            self.input(|d, now| d.recover(now));
        }
        // Set once the transport config proved unusable: the dispenser stays offline.
        let mut unusable = false;
        loop {
            // Offline: connect, while commands and timers keep being served.
            let mut connection = {
                let connect = reconnector.connect();
                tokio::pin!(connect);
                loop {
                    let deadline = self.dispenser.poll_timeout(Instant::now());
                    tokio::select! {
                        result = &mut connect, if !unusable => match result {
                            Ok(connection) => break connection,
                            Err(error) => {
                                tracing::error!(%identity, %error, "CSMS unusable; the dispenser stays offline");
                                unusable = true;
                            }
                        },
                        command = commands.recv() => match command {
                            Some(command) => self.input(|d, now| d.handle_command(command, now)),
                            None => return,
                        },
                        () = sleep_until(deadline) => self.input(|d, now| d.handle_timeout(now)),
                        _ = shutdown.changed() => return,
                    }
                }
            };
            tracing::info!(%identity, url = connection.url(), "CSMS connected");
            connected.set(1.0);
            self.input(|d, now| d.charge_point().handle_connected(now));
            let mut stop = false;
            let mut reset = None;
            // Online until the connection breaks.
            loop {
                if self.answered {
                    reconnector.reset();
                    self.answered = false;
                }
                if let Err(error) = self.transmit(&mut connection).await {
                    tracing::warn!(%identity, %error, "CSMS send failed");
                    break;
                }
                if stop {
                    break;
                }
                reset = self.input(|d, now| d.take_due_reset(now));
                if reset.is_some() {
                    break;
                }
                let deadline = self.dispenser.poll_timeout(Instant::now());
                tokio::select! {
                    received = connection.recv() => match received {
                        Ok(text) => {
                            self.input(|d, now| d.charge_point().handle_text(&text, now));
                            let rejected = self.dispenser.charge_point().rejected_frames();
                            metrics::counter!(crate::metrics::OCPP_REJECTED, "identity" => identity.clone())
                                .absolute(rejected);
                        }
                        Err(error) => {
                            tracing::warn!(%identity, %error, "CSMS connection lost");
                            break;
                        }
                    },
                    command = commands.recv() => match command {
                        Some(command) => self.input(|d, now| d.handle_command(command, now)),
                        None => stop = true,
                    },
                    () = sleep_until(deadline) => self.input(|d, now| d.handle_timeout(now)),
                    _ = shutdown.changed() => stop = true,
                }
            }
            self.input(|d, _| d.charge_point().handle_disconnected());
            connected.set(0.0);
            if (stop || reset.is_some())
                && let Err(error) = connection.close().await
            {
                tracing::debug!(%identity, %error, "CSMS close");
            }
            if stop {
                return;
            }
            if let Some(kind) = reset {
                tracing::info!(%identity, ?kind, "reset: connecting again");
                reconnector.reset();
            }
        }
    }

    /// Feeds one input to the dispenser at `now`, with the latest readings: under
    /// [`blocking`], since it may write the journal; then its events are handled and its
    /// reports forwarded.
    fn input<T>(&mut self, f: impl FnOnce(&mut Dispenser, Instant) -> T) -> T {
        let readings = self.readings.borrow_and_update().clone();
        let dispenser = &mut self.dispenser;
        let (result, answered) = blocking(|| {
            dispenser.set_readings(readings);
            let now = Instant::now();
            let result = f(dispenser, now);
            (result, dispenser.handle_events(now))
        });
        self.answered |= answered;
        while let Some(report) = self.dispenser.poll_report() {
            if self.reports.send(report).is_err() {
                tracing::debug!(
                    identity = self.dispenser.identity(),
                    "control task gone; report dropped"
                );
            }
        }
        result
    }

    /// Waits up to [`RECOVERY_READING_WAIT`] until every gun of `guns` has a trusted
    /// reading.
    async fn wait_for_registers(&mut self, guns: &[GunId]) {
        let deadline = tokio::time::Instant::now() + RECOVERY_READING_WAIT;
        loop {
            let all = {
                let readings = self.readings.borrow_and_update();
                guns.iter()
                    .all(|gun| readings.iter().any(|r| r.gun == *gun && r.meter.is_some()))
            };
            if all {
                return;
            }
            match tokio::time::timeout_at(deadline, self.readings.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
    }

    /// Sends every frame the charge point has ready, in order.
    async fn transmit(&mut self, connection: &mut Connection) -> Result<(), TransportError> {
        while let Some(text) = self.dispenser.charge_point().poll_transmit() {
            match Frame::parse(&text) {
                Ok(frame) => connection.send(&frame).await?,
                Err(rejected) => {
                    tracing::error!(identity = self.dispenser.identity(), %text, error = %rejected.error, "the core produced a frame that does not parse");
                }
            }
        }
        Ok(())
    }
}

/// This machine's wall clock, Unix ms: the dispenser's timestamps until the CSMS has
/// told its time.
fn local_unix_ms() -> i64 {
    i64::try_from(crate::publish::unix_ms()).unwrap_or(i64::MAX)
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
