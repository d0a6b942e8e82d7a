//! The cabinet daemon: one task owns the cabinet's CAN bus and its segment controllers
//! and runs them on frames and a fast tick; a second publishes what they show on Zenoh
//! and to Prometheus. In the style of mini-redis: a shutdown signal observed by both, and
//! errors that say which part failed.
//!
//! ```text
//!              ┌──────────── control task ─────────────┐
//!  CAN bus ───►│ decode ─► SegmentController (per seg) │───► CAN bus
//!              │   ▲ tick 10 ms        │ events        │
//!              │   └── auth decisions ◄┤ (store, log)  │
//!              └──────▲────────────────┼───────────────┘
//!  decisions, stop    │  status, Authorize, Start/StopTransaction (mpsc, never
//!  requests (mpsc)    │  awaited); gun readings (watch, every hand-over)
//!              ┌──────┴────────────────▼───────────────┐
//!              │ OCPP drivers (one per dispenser) ◄──► CSMS (ocpp::driver)
//!              └────────────────────────┬──────────────┘
//!                           snapshots (watch)
//!                                      ▼
//!                     publish task: Zenoh ≥ 5 Hz and on change, Prometheus
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringhub_proto::can::messages::AuthStatus;
use ringhub_proto::can::{CanFrame, CanMessage};
use ringhub_proto::config::{AuthMode, GunId, HubConfig, TransactionStart};
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::admin;
use crate::can::{CanBus, ReconnectPolicy, ReconnectingBus};
use crate::connector::{
    AuthDecision, AuthPolicy, Command, ConnectorEvent, ConnectorStatus, IdToken, LocalFault,
    SegmentController, SegmentSetup, SegmentSnapshot, Timing,
};
use crate::epochs::{self, Report};
use crate::islands::link::Outgoing;
use crate::islands::{self, Part, Wire};
use crate::latches::{self, ChangeSeq, LatchChange};
use crate::ocpp::driver::{
    AuthResult, DriverReport, Drivers, FREE_ID_TAG, PreviousStop, SiteFault,
};
use crate::options::NodeOptions;
use crate::publish::{self, Catalog, Origin, Publisher};
use crate::stall::{self, StallWatch};
use crate::store::{PendingToken, Store, StoreError};
use ringhub_cluster::lease::{Contact, LEASE, Lease, Standing};
use ringhub_cluster::record::Epoch;
use ringhub_cluster::record::Topology;
use ringhub_cluster::service::{Cluster, ClusterConfig};
use ringhub_proto::config::CabinetId;

/// How often the publish task sends everything even when nothing changed.
const PUBLISH_PERIOD: Duration = Duration::from_millis(200);
/// How often the control task looks at the cluster: the lease, the plan, operator clears.
const CLUSTER_CHECK_PERIOD: Duration = Duration::from_millis(100);
/// Longest wait for the bus when sending; a periodic frame that misses it goes out with
/// the next period.
const SEND_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest wait for the Zenoh session to close at shutdown (Zenoh's own limit is 10 s).
const SESSION_CLOSE_LIMIT: Duration = Duration::from_secs(1);
/// How long a degraded node waits before it takes the ties it cannot hear of for open:
/// the majority opens them a PLC watchdog after its own lease (S7).
const DEGRADED_TRUST: Duration = Duration::from_secs(2);

/// Why the node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    #[error(transparent)]
    Publish(#[from] publish::PublishError),
    #[error("zenoh session: {0}")]
    Zenoh(String),
    #[error("cluster: {0}")]
    Cluster(#[from] ringhub_cluster::service::ClusterError),
    #[error("starting the stall watch thread: {0}")]
    StallWatch(std::io::Error),
}

/// The controllers' setups for this node's segments.
pub fn segment_setups(options: &NodeOptions) -> Vec<SegmentSetup> {
    let auth = match options.auth {
        AuthMode::Free => AuthPolicy::Free,
        AuthMode::Local | AuthMode::Ocpp => AuthPolicy::Token,
    };
    options
        .segments
        .iter()
        .map(|segment| SegmentSetup::from_config(segment, auth, Timing::default()))
        .collect()
}

/// How a run of the node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop: everything stopped in order.
    Stopped,
    /// The control loop stalled this long: the caller restarts the node in place
    /// (`stall`). Nothing was stopped in order: as after a crash.
    Stalled(Duration),
}

/// Runs the node until `shutdown` turns true or it stalls.
pub async fn run(
    config: &HubConfig,
    options: NodeOptions,
    shutdown: watch::Receiver<bool>,
) -> Result<Ended, NodeError> {
    crate::metrics::install(options.metrics)?;
    crate::can::describe_metrics();
    let restarts = stall::restarts_so_far(std::env::var_os(stall::RESTARTS_ENV));
    metrics::counter!(stall::RESTARTS_METRIC).absolute(restarts);
    let stalls = StallWatch::start().map_err(NodeError::StallWatch)?;
    std::fs::create_dir_all(&options.data_dir).map_err(|source| NodeError::DataDir {
        path: options.data_dir.display().to_string(),
        source,
    })?;
    let store_path = options.store_path();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || Store::open(store_path))
            .await
            .map_err(join_error)??,
    );
    tracing::info!(store = %store.path().display(), "store open");
    let reader = Store::clone(&store);
    let clean = tokio::task::spawn_blocking(move || reader.take_clean_shutdown())
        .await
        .map_err(join_error)??;
    let previous_stop = if clean {
        PreviousStop::Clean
    } else {
        PreviousStop::Crash
    };
    tracing::info!(?previous_stop, "how the previous run ended");

    let zenoh_config = publish::zenoh_config(&options.zenoh_listen, &options.zenoh_connect)?;
    let session = zenoh::open(zenoh_config)
        .await
        .map_err(|e| NodeError::Zenoh(e.to_string()))?;
    let cluster = Arc::new(
        Cluster::start(
            &session,
            ClusterConfig {
                hub: options.hub.to_string(),
                cabinets: config.cabinets.iter().map(|c| c.id.to_string()).collect(),
                me: options.node.to_string(),
                data_dir: options.data_dir.clone(),
                topology: Topology::from_config(config),
                hold: ringhub_cluster::lease::LEASE + Timing::default().watchdog,
                ratings: ringhub_cluster::demand::Ratings::from_config(config),
            },
        )
        .await?,
    );
    tracing::info!(id = cluster.id(), "cluster member running");
    let raft_metrics = tokio::spawn(raft_metrics_loop(cluster.metrics(), shutdown.clone()));
    let origin_boot_id = publish::new_boot_id();
    let admin = tokio::spawn({
        let (session, cluster, config, node) = (
            session.clone(),
            cluster.clone(),
            config.clone(),
            options.node.to_string(),
        );
        async move {
            if let Err(error) = admin::serve(session, cluster, config, node, origin_boot_id).await {
                tracing::error!(%error, "admin queryable stopped");
            }
        }
    });
    let origin = Origin {
        hub: options.hub.clone(),
        node: options.node.clone(),
        boot_id: origin_boot_id,
        started_unix_ms: publish::unix_ms(),
    };
    let link_origin = origin.clone();
    let publisher = Publisher::new(
        session.clone(),
        origin,
        Catalog::from_config(config, &options.node),
    )
    .await?;
    let (snapshots_tx, snapshots_rx) = watch::channel(Published::default());
    let publish_task = tokio::spawn(publish_loop(
        publisher,
        snapshots_rx,
        options.hub.to_string(),
        options.node.to_string(),
        shutdown.clone(),
    ));

    let journal_store = Store::clone(&store);
    let reader = Store::clone(&store);
    let pending_latches = tokio::task::spawn_blocking(move || reader.latch_changes())
        .await
        .map_err(join_error)??;
    let (latch_tx, latch_rx) = mpsc::unbounded_channel();
    let (reports_tx, reports_rx) = watch::channel(None);
    let wire = Arc::new(std::sync::Mutex::new(Wire::default()));
    let (outgoing_tx, outgoing_rx) = watch::channel(Vec::new());
    let island_link = tokio::spawn({
        let (session, wire, shutdown) = (session.clone(), wire.clone(), shutdown.clone());
        async move {
            if let Err(error) =
                islands::link::run(session, link_origin, wire, outgoing_rx, shutdown).await
            {
                tracing::error!(%error, "island link stopped: donors hear no host");
            }
        }
    });
    let reporter = tokio::spawn(epochs::report_loop(
        cluster.clone(),
        options.node.clone(),
        origin_boot_id,
        reports_rx,
        shutdown.clone(),
    ));
    let link = ClusterLink {
        cluster: cluster.clone(),
        latches: latch_tx,
        reports: reports_tx,
        voters: config.cabinets.iter().map(|c| c.id.clone()).collect(),
    };
    let mut control = Control::new(
        &options,
        store.clone(),
        snapshots_tx,
        link,
        (wire, outgoing_tx),
    )
    .await?;
    control.restore_latches(&pending_latches);
    let latch_task = tokio::spawn(latches::run(
        cluster.clone(),
        store,
        options.node.clone(),
        origin_boot_id,
        pending_latches,
        latch_rx,
        shutdown.clone(),
    ));
    let has_csms = options.dispensers.iter().any(|d| d.csms_url.is_some());
    if options.auth == AuthMode::Ocpp && has_csms {
        control.drivers = Some(Drivers::start(
            &options.dispensers,
            &journal_store,
            previous_stop,
            &shutdown,
        ));
    }
    if let Ended::Stalled(gap) = control.run(shutdown, stalls).await {
        return Ok(Ended::Stalled(gap));
    }
    // In order: the tasks that write (each drops a write in flight on shutdown), then
    // Raft, and only then the Zenoh session they all share. Closed first, the session
    // would strand a leader's write it can no longer replicate.
    let publisher = publish_task.await;
    raft_metrics.abort();
    admin.abort();
    let _ = latch_task.await;
    let _ = reporter.await;
    let _ = island_link.await;
    cluster.shutdown().await;
    if let Ok(publisher) = publisher {
        match tokio::time::timeout(SESSION_CLOSE_LIMIT, publisher.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the Zenoh session did not close cleanly"),
            Err(_) => tracing::warn!(
                limit = ?SESSION_CLOSE_LIMIT,
                "the Zenoh session did not close within its limit"
            ),
        }
    }
    // Everything that writes the store has stopped: the next start may trust this mark.
    tokio::task::spawn_blocking(move || journal_store.mark_clean_shutdown())
        .await
        .map_err(join_error)??;
    tracing::info!("stopped cleanly");
    Ok(Ended::Stopped)
}

fn join_error(error: tokio::task::JoinError) -> NodeError {
    NodeError::Zenoh(format!("blocking task failed: {error}"))
}

/// What the control task hands the publisher.
#[derive(Debug, Clone, Default)]
struct Published {
    /// The segments now.
    snapshots: Vec<SegmentSnapshot>,
    /// Bumped when something an observer must see at once changed (status, fault, session).
    urgent: u64,
    /// The plan epoch the controllers' budgets come from (0: none yet).
    plan_epoch: u64,
    /// Each segment's place in that plan.
    islands: Vec<crate::metrics::SegmentIsland>,
}

/// The control task's state.
struct Control {
    /// The cabinet's bus.
    bus: ReconnectingBus,
    /// One controller per segment.
    controllers: Vec<SegmentController>,
    /// Crash-safe pending tokens.
    store: Arc<Store>,
    /// Who decides tokens.
    auth: AuthMode,
    /// Accepted id tags for local authorisation.
    local_list: Vec<String>,
    /// Snapshots for the publisher.
    snapshots: watch::Sender<Published>,
    /// Urgent publications so far.
    urgent: u64,
    /// When the snapshots were last handed over.
    last_handover: Instant,
    /// The OCPP drivers, with `--auth ocpp` and a CSMS; `None`: local decisions only.
    drivers: Option<Drivers>,
    /// Per controller: its gun's last status, to re-report Faulted when the fault arrives.
    statuses: Vec<Option<ConnectorStatus>>,
    /// Per controller: the last fault raised and not cleared, for Faulted's error code.
    faults: Vec<Option<LocalFault>>,
    /// The hub- or cabinet-wide latch the dispensers were last told of.
    site_fault: Option<SiteFault>,
    /// This node's cabinet, for the latches it raises.
    node: CabinetId,
    /// The cluster member and what goes to it.
    link: ClusterLink,
    /// Whether the node is in contact with a majority (S7).
    lease: Lease,
    /// The plan epoch whose budgets the controllers have; `None` until one is applied.
    applied_epoch: Option<Epoch>,
    /// Why the applied epoch is still to be reported, once every segment has carried
    /// out its part.
    unreported: Option<&'static str>,
    /// What the plan asks of each segment (every segment alone while degraded, S7).
    parts: Vec<Part>,
    /// What the ring says, from the island link and the controllers.
    wire: Arc<std::sync::Mutex<Wire>>,
    /// What this node's hosts and donors say, to the island link.
    outgoing: watch::Sender<Vec<Outgoing>>,
    /// What was last handed to the link with a notification.
    said: Vec<Outgoing>,
    /// Since when the node has been degraded (S7).
    degraded_since: Option<Instant>,
    /// When the cluster was last looked at.
    last_cluster_check: Instant,
}

/// What the control task holds of the cluster.
struct ClusterLink {
    /// The member: its record, its metrics, the liveliness it sees.
    cluster: Arc<Cluster>,
    /// Fault raises and clears, to the latch task and the Raft log.
    latches: mpsc::UnboundedSender<LatchChange>,
    /// Reports of the epoch reached, to the report task.
    reports: watch::Sender<Option<Report>>,
    /// The voters: the hub config's cabinets.
    voters: Vec<CabinetId>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("bus", &self.bus.uri())
            .field("controllers", &self.controllers.len())
            .finish()
    }
}

impl Control {
    async fn new(
        options: &NodeOptions,
        store: Arc<Store>,
        snapshots: watch::Sender<Published>,
        link: ClusterLink,
        (wire, outgoing): (Arc<std::sync::Mutex<Wire>>, watch::Sender<Vec<Outgoing>>),
    ) -> Result<Self, NodeError> {
        let now = Instant::now();
        let mut controllers: Vec<SegmentController> = segment_setups(options)
            .into_iter()
            .map(|setup| SegmentController::new(setup, now))
            .collect();
        let reader = store.clone();
        let pending = tokio::task::spawn_blocking(move || reader.tokens())
            .await
            .map_err(join_error)??;
        for (gun, token) in pending {
            let decision = match token.decision {
                AuthStatus::Accepted => Some(AuthDecision::Accepted),
                AuthStatus::Rejected => Some(AuthDecision::Rejected),
                AuthStatus::None | AuthStatus::Ongoing => None,
            };
            if let Some(controller) = controllers
                .iter_mut()
                .find(|c| c.setup().gun.is_some_and(|g| g.id == gun))
            {
                tracing::info!(%gun, token = %token.token, ?decision, "replaying a pending token from before the restart");
                controller.restore_token(token.token, decision, now);
            }
        }
        let count = controllers.len();
        // Until a plan is applied, every segment alone: its gun energises only once the
        // ties around it read open.
        let parts = link
            .cluster
            .record()
            .read(|r| islands::alone(r, &options.node));
        let lease = Lease::new(now, LEASE);
        // The standing is a gauge from the start, not only from its first change.
        crate::metrics::record_standing(lease.standing());
        Ok(Self {
            bus: ReconnectingBus::new(options.can.clone(), ReconnectPolicy::default()),
            controllers,
            store,
            auth: options.auth,
            local_list: options.local_auth_list.clone(),
            snapshots,
            urgent: 0,
            last_handover: now,
            drivers: None,
            statuses: vec![None; count],
            faults: vec![None; count],
            site_fault: None,
            node: options.node.clone(),
            link,
            lease,
            applied_epoch: None,
            unreported: None,
            parts,
            wire,
            outgoing,
            said: Vec::new(),
            degraded_since: None,
            last_cluster_check: now,
        })
    }

    /// Every [`CLUSTER_CHECK_PERIOD`]: the lease, the plan, operator clears, latches.
    fn follow_cluster(&mut self, now: Instant) {
        if now.duration_since(self.last_cluster_check) < CLUSTER_CHECK_PERIOD {
            return;
        }
        self.last_cluster_check = now;
        self.keep_lease(now);
        self.apply_plan(now);
        self.follow_operator_clears(now);
        self.follow_latches();
    }

    /// Records the record's active latches, and tells the dispensers when a hub- or
    /// cabinet-wide latch starts or stops holding this cabinet, for their connector 0.
    fn follow_latches(&mut self) {
        let fault = self.link.cluster.record().read(|record| {
            crate::metrics::record_latches(record);
            latches::site_latch(record, &self.node).map(|l| SiteFault {
                code: l.spec.code.clone(),
                subject: l.spec.subject.clone(),
            })
        });
        if let Some(drivers) = &self.drivers
            && fault != self.site_fault
        {
            drivers.site_fault(fault.as_ref());
            self.site_fault = fault;
        }
    }

    /// Renews or loses the lease (S7), from the liveliness tokens and Raft's view.
    fn keep_lease(&mut self, now: Instant) {
        let cluster = &self.link.cluster;
        let alive = cluster.alive().borrow().clone();
        let metrics = cluster.metrics().borrow().clone();
        let contact = Contact {
            alive_voters: self
                .link
                .voters
                .iter()
                .filter(|v| alive.contains(*v))
                .count(),
            voters: self.link.voters.len(),
            leader_quorum_ack: (metrics.state == openraft::ServerState::Leader)
                .then(|| metrics.millis_since_quorum_ack.map(Duration::from_millis)),
        };
        let Some(standing) = self.lease.observe(now, contact) else {
            return;
        };
        crate::metrics::record_standing(standing);
        match standing {
            Standing::Degraded => {
                self.degraded_since = Some(now);
                // Every segment alone whatever the plan (`apply_plan`): donors ramp
                // down, hosts keep to their own modules, ties open once below 5 A.
                tracing::warn!(
                    alive = alive.len(),
                    "no contact with a majority for longer than the lease: degraded local mode, own modules only, ties open"
                );
            }
            Standing::Joined => {
                self.degraded_since = None;
                tracing::info!("contact with a majority again: following the committed plan");
                self.applied_epoch = None;
            }
        }
    }

    /// Hands a new epoch's budgets and island parts to the controllers, and reports the
    /// epoch once every segment has carried out its part (see `epochs`). While degraded,
    /// nothing new is applied and every segment is alone, its tie opened (S7).
    fn apply_plan(&mut self, now: Instant) {
        if self.lease.standing() != Standing::Joined {
            self.parts = self
                .link
                .cluster
                .record()
                .read(|r| islands::alone(r, &self.node));
            return;
        }
        let (epoch, budgets, parts) = self.link.cluster.record().read(|r| {
            (
                r.epoch(),
                epochs::budgets(r, &self.node),
                islands::parts(r, &self.node),
            )
        });
        if epoch != Epoch(0) && self.applied_epoch != Some(epoch) {
            for (segment, budget) in budgets {
                if let Some(controller) = self
                    .controllers
                    .iter_mut()
                    .find(|c| c.setup().segment == segment)
                {
                    let _ = controller.handle_command(Command::SetBudget(Some(budget)), now);
                }
            }
            self.parts = parts;
            self.unreported = Some(if self.applied_epoch.is_none() {
                "joined"
            } else {
                "new epoch"
            });
            tracing::info!(epoch = epoch.0, "plan applied");
            self.applied_epoch = Some(epoch);
        }
        let reached = self.controllers.iter().all(|c| c.island_reached(now));
        if let (Some(why), Some(epoch), true) = (self.unreported, self.applied_epoch, reached) {
            let ties = self
                .controllers
                .iter()
                .filter(|c| c.setup().tie_fitted)
                .map(|c| {
                    let view = c.snapshot(now).mn.unwrap_or_default();
                    let unmade = c.tie_unmade(now);
                    (c.setup().segment, epochs::tie_observation(&view, unmade))
                })
                .collect();
            tracing::info!(epoch = epoch.0, why, "plan reached");
            self.link
                .reports
                .send_replace(Some(Report { epoch, ties, why }));
            self.unreported = None;
        }
    }

    /// Every tick: the ring's news into each controller's island part, and what this
    /// node's hosts and donors say out to the link.
    fn step_islands(&mut self, now: Instant) {
        let epoch = self.applied_epoch.unwrap_or_default();
        // A tie not heard of counts as open only once the majority has opened what is
        // next to this cabinet (S7: after the lease and the PLC watchdog).
        let degraded = self
            .degraded_since
            .is_some_and(|since| now.duration_since(since) >= DEGRADED_TRUST);
        let mut said = Vec::new();
        {
            let mut wire = self
                .wire
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for controller in &self.controllers {
                if let Some(closed) = controller.tie_reads_closed() {
                    wire.tie(controller.setup().segment, closed, now);
                }
            }
            for controller in &mut self.controllers {
                let segment = controller.setup().segment;
                let Some(part) = self.parts.iter().find(|p| p.segment == segment) else {
                    controller.set_island(Default::default());
                    continue;
                };
                controller.set_island(wire.input(part, now, degraded));
                match part.role {
                    islands::Role::Host { gun, .. } => {
                        if let Some(setpoint) = controller.host_setpoint() {
                            said.push(Outgoing::Host {
                                gun,
                                segment,
                                epoch,
                                setpoint,
                            });
                        }
                    }
                    islands::Role::Donor { gun, .. } => {
                        if let Some(status) = controller.donor_status(now) {
                            said.push(Outgoing::Donor {
                                gun,
                                segment,
                                epoch,
                                status,
                            });
                        }
                    }
                    islands::Role::Alone => {}
                }
            }
        }
        let notify = islands::link::changed(&self.said, &said);
        if notify {
            self.said = said.clone();
        }
        self.outgoing.send_if_modified(|current| {
            *current = said;
            notify
        });
    }

    /// Puts the latches that need an operator back into the controllers (see
    /// [`latches::restore`]): from the record as this node last applied it, and from the
    /// changes it had not sent yet.
    fn restore_latches(&mut self, pending: &[(ChangeSeq, LatchChange)]) {
        let faults = self
            .link
            .cluster
            .record()
            .read(|record| latches::restore(record, pending, &self.node));
        let now = Instant::now();
        for fault in faults {
            let holder = self
                .controllers
                .iter_mut()
                .position(|c| c.restore_fault(&fault, now));
            if let Some(index) = holder {
                tracing::warn!(code = %fault.code, subject = %fault.subject, "latched fault restored: it needs an operator");
                self.faults[index] = Some(fault);
            }
        }
    }

    /// Lets a controller drop a fault that needs an operator once the record shows the
    /// operator's clear; a controller that refuses (the condition still holds) raises it
    /// again, as a new latch.
    fn follow_operator_clears(&mut self, now: Instant) {
        let record = self.link.cluster.record();
        for controller in &mut self.controllers {
            let cleared: Vec<LocalFault> = record.read(|record| {
                controller
                    .faults()
                    .iter()
                    .filter(|f| f.code.needs_operator())
                    .filter(|f| {
                        latches::cleared_by_operator(
                            record,
                            &self.node,
                            f.code.as_str(),
                            &f.subject,
                        )
                    })
                    .cloned()
                    .collect()
            });
            for fault in cleared {
                match controller.handle_command(Command::ClearFault(fault.code), now) {
                    Ok(()) => {
                        tracing::info!(code = %fault.code, subject = %fault.subject, "cleared by an operator")
                    }
                    Err(error) => {
                        tracing::warn!(code = %fault.code, %error, "an operator cleared it, but the condition holds: latched again");
                        let change = latches::raise_of(&fault, &self.node, publish::unix_ms());
                        let _ = self.link.latches.send(change);
                    }
                }
            }
        }
    }

    /// Runs until `shutdown`, or until a stall: then it returns at once, before the
    /// controllers take the stall for silent PLCs and modules.
    async fn run(mut self, mut shutdown: watch::Receiver<bool>, stalls: StallWatch) -> Ended {
        let tick_period = Timing::default().tick;
        let mut tick = tokio::time::interval(tick_period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tracing::info!(bus = %self.bus.uri(), segments = self.controllers.len(), "control loop running");
        loop {
            tokio::select! {
                received = self.bus.recv() => match received {
                    Ok(received) => self.handle_frame(received.frame),
                    Err(error) => {
                        tracing::error!(%error, "CAN bus gave up");
                        break;
                    }
                },
                Some(report) = next_report(&mut self.drivers) => match report {
                    DriverReport::Auth(result) => self.handle_decision(result).await,
                    DriverReport::StopSession { gun } => self.stop_session(gun),
                    DriverReport::SetAvailable { gun, available } => self.set_available(gun, available),
                    DriverReport::RemoteStart { gun, token } => self.remote_start(gun, token).await,
                    DriverReport::Unlock { gun } => {
                        self.command(gun, Command::Unlock);
                    }
                    DriverReport::ConnectionTimeout { gun, timeout } => {
                        self.command(gun, Command::SetConnectionTimeout(timeout));
                    }
                },
                _ = tick.tick() => {
                    let started = Instant::now();
                    if let Some(gap) = stalls.stalled(started) {
                        return Ended::Stalled(gap);
                    }
                    self.step_islands(started);
                    for controller in &mut self.controllers {
                        controller.handle_timeout(started);
                    }
                    self.follow_cluster(started);
                    crate::metrics::record_tick(started.elapsed());
                }
                _ = shutdown.changed() => break,
            }
            self.flush().await;
        }
        tracing::info!("control loop stopped");
        if let Some(drivers) = self.drivers {
            drivers.join().await;
        }
        Ended::Stopped
    }

    fn handle_frame(&mut self, frame: CanFrame) {
        let now = Instant::now();
        match CanMessage::decode(&frame) {
            Ok(message) => {
                for controller in &mut self.controllers {
                    controller.handle_frame(&message, now);
                }
            }
            Err(error) => {
                metrics::counter!(crate::can::DECODE_ERRORS, "bus" => self.bus.uri().to_string())
                    .increment(1);
                tracing::debug!(%frame, %error, "frame did not decode");
            }
        }
    }

    /// Sends what the controllers want sent, handles their events, and hands snapshots
    /// to the publisher.
    async fn flush(&mut self) {
        for i in 0..self.controllers.len() {
            while let Some(message) = self.controllers[i].poll_transmit() {
                let Ok(frame) = message.encode() else {
                    tracing::error!(?message, "controller produced an unencodable frame");
                    continue;
                };
                match tokio::time::timeout(SEND_TIMEOUT, self.bus.send(frame)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::debug!(%error, "send failed"),
                    Err(_) => tracing::debug!(%frame, "bus not ready; frame dropped"),
                }
            }
            while let Some(event) = self.controllers[i].poll_event() {
                self.handle_event(i, event).await;
            }
        }
        let now = Instant::now();
        let urgent = self.snapshots.borrow().urgent != self.urgent;
        if urgent || now.duration_since(self.last_handover) >= PUBLISH_PERIOD / 4 {
            self.last_handover = now;
            let snapshots: Vec<SegmentSnapshot> =
                self.controllers.iter().map(|c| c.snapshot(now)).collect();
            if let Some(drivers) = &self.drivers {
                drivers.readings(&snapshots);
            }
            self.snapshots.send_replace(Published {
                snapshots,
                urgent: self.urgent,
                plan_epoch: self.applied_epoch.map_or(0, |e| e.0),
                islands: self.parts.iter().map(islands::Part::metrics_view).collect(),
            });
        }
    }

    async fn handle_event(&mut self, index: usize, event: ConnectorEvent) {
        match event {
            ConnectorEvent::Authorize { gun, token } => {
                // Stored before it is decided, so a restart asks again instead of forgetting it.
                self.persist(gun, &token, AuthStatus::Ongoing).await;
                if self
                    .drivers
                    .as_ref()
                    .is_some_and(|d| d.authorize(gun, &token))
                {
                    tracing::info!(%gun, %token, "asking the CSMS");
                    return;
                }
                let decision = self.decide(&token);
                let status = if decision == AuthDecision::Accepted {
                    AuthStatus::Accepted
                } else {
                    AuthStatus::Rejected
                };
                self.persist(gun, &token, status).await;
                tracing::info!(%gun, %token, ?decision, "authorisation");
                self.controllers[index].handle_auth_decision(&token, decision, Instant::now());
            }
            ConnectorEvent::SessionEnded {
                gun,
                reason,
                energy,
            } => {
                tracing::info!(%gun, ?reason, energy_kwh = energy.0, "session ended");
                if let Some(drivers) = &self.drivers {
                    drivers.session_ended(gun, reason, energy);
                }
                self.forget_token(gun).await;
                self.urgent += 1;
            }
            ConnectorEvent::SessionStarted {
                gun,
                token,
                meter_start,
            } => {
                tracing::info!(%gun, token = ?token.as_ref().map(ToString::to_string), meter_start_kwh = meter_start.0, "session started");
                if let Some(drivers) = &self.drivers {
                    let id_tag = self.session_id_tag(index, token.as_ref());
                    drivers.session_started(gun, TransactionStart::Energy, &id_tag, meter_start);
                }
                self.urgent += 1;
            }
            ConnectorEvent::EvConnected {
                gun,
                token,
                meter_start,
            } => {
                tracing::info!(%gun, token = ?token.as_ref().map(ToString::to_string), "EV connected and authorised");
                if let Some(drivers) = &self.drivers {
                    let id_tag = self.session_id_tag(index, token.as_ref());
                    drivers.session_started(
                        gun,
                        TransactionStart::EvConnected,
                        &id_tag,
                        meter_start,
                    );
                }
            }
            ConnectorEvent::StatusChanged { gun, status } => {
                tracing::info!(%gun, ?status, "status");
                self.statuses[index] = Some(status);
                if let Some(drivers) = &self.drivers {
                    drivers.status(gun, status, self.faults[index].clone());
                }
                self.urgent += 1;
            }
            ConnectorEvent::TokenExpired { gun, token } => {
                tracing::info!(%gun, %token, "no plug-in within ConnectionTimeOut: token forgotten");
                self.forget_token(gun).await;
            }
            ConnectorEvent::IdentityReceived { gun, identity } => {
                tracing::info!(%gun, mac = %identity.mac, emaid = ?identity.emaid, "EV identity");
            }
            ConnectorEvent::Fault { fault, raised } => {
                // A raise goes into the log; the leader clears by rule from the conditions
                // this node publishes.
                if raised {
                    let change = latches::raise_of(&fault, &self.node, publish::unix_ms());
                    if self.link.latches.send(change).is_err() {
                        tracing::error!(code = %fault.code, "the latch task has stopped: fault not latched");
                    }
                    tracing::warn!(code = %fault.code, subject = %fault.subject, detail = %fault.detail, "fault raised");
                    self.faults[index] = Some(fault);
                    let gun = self.controllers[index].setup().gun.map(|g| g.id);
                    if let (Some(drivers), Some(gun), Some(ConnectorStatus::Faulted)) =
                        (&self.drivers, gun, self.statuses[index])
                    {
                        drivers.status(gun, ConnectorStatus::Faulted, self.faults[index].clone());
                    }
                } else {
                    tracing::info!(code = %fault.code, subject = %fault.subject, "fault cleared");
                    if self.faults[index]
                        .as_ref()
                        .is_some_and(|f| f.code == fault.code)
                    {
                        self.faults[index] = None;
                    }
                }
                self.urgent += 1;
            }
        }
    }

    /// A decision from an OCPP driver: stored, then handed to the gun's controller.
    async fn handle_decision(&mut self, result: AuthResult) {
        let AuthResult {
            gun,
            token,
            decision,
        } = result;
        let status = match decision {
            AuthDecision::Accepted => AuthStatus::Accepted,
            AuthDecision::Rejected => AuthStatus::Rejected,
        };
        self.persist(gun, &token, status).await;
        tracing::info!(%gun, %token, ?decision, "authorisation (OCPP)");
        if let Some(controller) = self
            .controllers
            .iter_mut()
            .find(|c| c.setup().gun.is_some_and(|g| g.id == gun))
        {
            controller.handle_auth_decision(&token, decision, Instant::now());
        }
    }

    /// The id tag of a session's transaction: its token's; without a token, the EV's MAC
    /// in upper-case hex when known, else [`FREE_ID_TAG`].
    fn session_id_tag(&self, index: usize, token: Option<&IdToken>) -> String {
        if let Some(token) = token {
            return token.id_tag().to_owned();
        }
        self.controllers[index]
            .snapshot(Instant::now())
            .gun
            .and_then(|g| g.ev_identity)
            .map_or_else(
                || FREE_ID_TAG.to_owned(),
                |identity| identity.mac.0.iter().map(|b| format!("{b:02X}")).collect(),
            )
    }

    /// The CSMS asked to stop `gun`'s session (it refused its id tag, or by
    /// RemoteStopTransaction).
    fn stop_session(&mut self, gun: GunId) {
        tracing::info!(%gun, "stopping the session at the CSMS's request");
        self.command(gun, Command::StopSession);
    }

    /// The CSMS changed `gun`'s availability; the driver sends this only while the gun
    /// has no transaction, so no running one is cut.
    fn set_available(&mut self, gun: GunId, available: bool) {
        tracing::info!(%gun, available, "availability changed by the CSMS");
        self.command(gun, Command::SetAvailable(available));
    }

    /// RemoteStartTransaction: `gun` takes the already authorised remote `token`; it is
    /// stored as the gun's pending token before its acceptance reaches the PLC (the next
    /// flush), so a restart replays it.
    async fn remote_start(&mut self, gun: GunId, token: IdToken) {
        tracing::info!(%gun, %token, "remote start");
        if self.command(gun, Command::RemoteStart(token.clone())) {
            self.persist(gun, &token, AuthStatus::Accepted).await;
        }
    }

    /// Hands `command` to `gun`'s controller; false if it refused it or no controller
    /// has the gun.
    fn command(&mut self, gun: GunId, command: Command) -> bool {
        let Some(controller) = self
            .controllers
            .iter_mut()
            .find(|c| c.setup().gun.is_some_and(|g| g.id == gun))
        else {
            return false;
        };
        match controller.handle_command(command.clone(), Instant::now()) {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%gun, ?command, %error, "command refused");
                false
            }
        }
    }

    /// Local authorisation: the cabinet's list, for `local` cabinets and for `ocpp` guns
    /// whose dispenser has no CSMS (as a charge point decides offline).
    fn decide(&self, token: &IdToken) -> AuthDecision {
        let tag = token.id_tag();
        let listed = self
            .local_list
            .iter()
            .any(|accepted| accepted.eq_ignore_ascii_case(tag));
        match self.auth {
            AuthMode::Free => AuthDecision::Accepted,
            AuthMode::Local | AuthMode::Ocpp if listed => AuthDecision::Accepted,
            AuthMode::Local | AuthMode::Ocpp => AuthDecision::Rejected,
        }
    }

    /// Deletes `gun`'s pending token from the store.
    async fn forget_token(&self, gun: GunId) {
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.remove_token(gun)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "could not remove the pending token"),
            Err(error) => tracing::error!(%error, "store task failed"),
        }
    }

    async fn persist(&self, gun: GunId, token: &IdToken, decision: AuthStatus) {
        let store = self.store.clone();
        let pending = PendingToken {
            token: token.clone(),
            decision,
            stored_unix_ms: publish::unix_ms(),
        };
        match tokio::task::spawn_blocking(move || store.put_token(gun, &pending)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "could not store the pending token"),
            Err(error) => tracing::error!(%error, "store task failed"),
        }
    }
}

/// Records the cluster's metrics whenever they change, until shutdown.
async fn raft_metrics_loop(
    mut metrics: watch::Receiver<openraft::RaftMetrics<u64, openraft::BasicNode>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        crate::metrics::record_raft(&metrics.borrow_and_update());
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// The next report of the OCPP drivers; never, without drivers or once they stopped.
async fn next_report(drivers: &mut Option<Drivers>) -> Option<DriverReport> {
    match drivers {
        Some(drivers) => drivers.reports.recv().await,
        None => std::future::pending().await,
    }
}

/// Publishes snapshots on Zenoh and records them in Prometheus: at once when something
/// urgent changed, and every [`PUBLISH_PERIOD`] regardless. Hands the publisher back on
/// shutdown: closing it closes the session, which Raft needs until it has stopped.
async fn publish_loop(
    mut publisher: Publisher,
    mut snapshots: watch::Receiver<Published>,
    hub: String,
    cabinet: String,
    mut shutdown: watch::Receiver<bool>,
) -> Publisher {
    let mut period = tokio::time::interval(PUBLISH_PERIOD);
    period.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut urgent_seen = 0;
    loop {
        tokio::select! {
            _ = period.tick() => {}
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                if snapshots.borrow().urgent == urgent_seen {
                    continue;
                }
            }
            _ = shutdown.changed() => break,
        }
        let published = snapshots.borrow_and_update().clone();
        urgent_seen = published.urgent;
        crate::metrics::record(&published.snapshots, &hub, &cabinet);
        crate::metrics::record_islands(&published.islands, &hub, &cabinet);
        publisher.set_plan_epoch(published.plan_epoch);
        // Epochs stay far below 2^53: exact as f64.
        metrics::gauge!(crate::metrics::PLAN_EPOCH).set(published.plan_epoch as f64);
        if let Err(error) = publisher.publish(&published.snapshots).await {
            tracing::warn!(%error, "publish failed");
        }
    }
    publisher
}
