//! The shell around the pure [`World`](crate::world::World): everything with a clock, a
//! socket or a file. One task owns the world (the runner, an actor); the bus server and
//! the control API talk to it through channels, and it never waits on them.
//!
//! ```text
//!   socketcand clients ──TCP──► bus::serve ──HostFrame (mpsc, bounded)──┐
//!   (nodes, python-can)  ◄── per-bus broadcast (bounded, drop-oldest) ◄─┤
//!                                                                       ▼
//!   HTTP clients ──► control::serve ──Request + oneshot (mpsc)──► runner::RealTime ─► World
//!                                                                       │
//!                                          violations JSONL, --strict ◄─┘
//!
//!   scenario files ──► scenario::run: the same World in virtual time, no sockets
//! ```
//!
//! Shutdown is one `watch` channel (mini-redis `shutdown.rs`): [`Sim::shutdown`] flips it,
//! every task selects on it, and [`Sim::wait`] joins them all.

pub mod bus;
pub mod control;
pub mod runner;
pub mod scenario;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ringhub_proto::config::HubConfig;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::world::{Violation, World};

use self::bus::{BusStats, Buses};
use self::runner::{RealTime, RunnerExit, ViolationLog, WorldHandle};

/// Frames from socketcand clients waiting for the world; a client that fills it waits
/// (TCP back-pressure on that client), the world does not.
const HOST_FRAME_QUEUE: usize = 4096;

/// Control requests waiting for the world.
const REQUEST_QUEUE: usize = 64;

/// Everything [`Sim::start`] needs.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The hub to simulate.
    pub config: HubConfig,
    /// Seeds every random choice of the world.
    pub seed: u64,
    /// Where to serve the cabinets' buses (socketcand); port 0 picks a free port.
    pub socketcand: SocketAddr,
    /// Where to serve the control API; port 0 picks a free port.
    pub control: SocketAddr,
    /// Stop at the first violation of a safety invariant.
    pub strict: bool,
    /// Where to append each violation as a JSON line.
    pub violations_log: Option<PathBuf>,
}

impl SimOptions {
    /// The options `config` asks for: socketcand on `127.0.0.1:sim.socketcand_port`, the
    /// control API on `sim.control`, not strict, no violations log.
    pub fn new(config: HubConfig, seed: u64) -> Self {
        let socketcand = SocketAddr::from(([127, 0, 0, 1], config.sim.socketcand_port));
        let control = config.sim.control;
        Self {
            config,
            seed,
            socketcand,
            control,
            strict: false,
            violations_log: None,
        }
    }

    /// Both servers on free loopback ports, for tests.
    pub fn ephemeral(config: HubConfig, seed: u64) -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            socketcand: loopback,
            control: loopback,
            ..Self::new(config, seed)
        }
    }
}

/// Why the simulator could not start. The config is already valid by then: what fails
/// is the machine (a port in use, a log file that cannot be created).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Listen {
        /// Which server.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot open the violations log {path}: {source}")]
    ViolationsLog { path: PathBuf, source: io::Error },
}

/// How a running simulator ended.
#[derive(Debug)]
pub enum Exit {
    /// [`Sim::shutdown`] was called.
    Shutdown,
    /// `strict` was set and the referee saw this violation.
    StrictViolation(Violation),
}

/// The shutdown signal every task listens to; made by [`Sim::start`].
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown is signalled (or its sender is gone, which means the same).
    pub async fn wait(&mut self) {
        // An Err means the sender was dropped: shut down too.
        let _ = self.0.wait_for(|&down| down).await;
    }
}

/// Stops a running [`Sim`].
#[derive(Debug, Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    /// Asks every task of the simulator to stop.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

/// A running simulator: the world's runner, the socketcand server and the control API.
#[derive(Debug)]
pub struct Sim {
    /// Where the buses are served.
    socketcand_addr: SocketAddr,
    /// Where the control API is served.
    control_addr: SocketAddr,
    /// The buses, for their counters.
    buses: Buses,
    /// Talks to the runner.
    world: WorldHandle,
    /// Flipped to `true` to stop every task.
    shutdown: Stopper,
    /// The task that owns the world.
    runner: JoinHandle<io::Result<RunnerExit>>,
    /// The socketcand server.
    bus_server: JoinHandle<()>,
    /// The control API.
    control_server: JoinHandle<io::Result<()>>,
}

impl Sim {
    /// Binds both servers, builds the world and starts stepping it in real time.
    pub async fn start(options: SimOptions) -> Result<Self, StartError> {
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen { what, addr, source })
        };
        let bus_listener = bind("socketcand", options.socketcand).await?;
        let control_listener = bind("control API", options.control).await?;
        let local = |what, listener: &TcpListener, addr| {
            listener
                .local_addr()
                .map_err(|source| StartError::Listen { what, addr, source })
        };
        let socketcand_addr = local("socketcand", &bus_listener, options.socketcand)?;
        let control_addr = local("control API", &control_listener, options.control)?;
        let violations = match &options.violations_log {
            Some(path) => {
                ViolationLog::create(path).map_err(|source| StartError::ViolationsLog {
                    path: path.clone(),
                    source,
                })?
            }
            None => ViolationLog::none(),
        };

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shutdown = Shutdown(shutdown_rx);
        let buses = Buses::new(options.config.cabinets.iter().map(|c| c.id.clone()));
        let (host_tx, host_rx) = mpsc::channel(HOST_FRAME_QUEUE);
        let (request_tx, request_rx) = mpsc::channel(REQUEST_QUEUE);
        let world = WorldHandle::new(request_tx);

        let runner = RealTime {
            world: World::new(&options.config, options.seed),
            buses: buses.clone(),
            host_frames: host_rx,
            requests: request_rx,
            violations,
            strict: options.strict,
            shutdown: shutdown.clone(),
        };
        let runner = tokio::spawn(runner.run());
        let bus_server = tokio::spawn(bus::serve(
            bus_listener,
            buses.clone(),
            host_tx,
            shutdown.clone(),
        ));
        let control_server = tokio::spawn(control::serve(
            control_listener,
            world.clone(),
            buses.clone(),
            shutdown,
        ));
        tracing::info!(%socketcand_addr, %control_addr, seed = options.seed, "simulator running");
        Ok(Self {
            socketcand_addr,
            control_addr,
            buses,
            world,
            shutdown: Stopper(Arc::new(shutdown_tx)),
            runner,
            bus_server,
            control_server,
        })
    }

    /// Where the socketcand server listens (the bound port when 0 was asked for).
    pub fn socketcand_addr(&self) -> SocketAddr {
        self.socketcand_addr
    }

    /// Where the control API listens.
    pub fn control_addr(&self) -> SocketAddr {
        self.control_addr
    }

    /// A handle on the world, as the control API has.
    pub fn world(&self) -> WorldHandle {
        self.world.clone()
    }

    /// The bus server's counters so far.
    pub fn bus_stats(&self) -> BusStats {
        self.buses.stats()
    }

    /// Asks every task to stop; [`Sim::wait`] then returns.
    pub fn shutdown(&self) {
        self.shutdown.stop();
    }

    /// Stops the simulator from elsewhere (a signal handler) while [`Sim::wait`] runs.
    pub fn stopper(&self) -> Stopper {
        self.shutdown.clone()
    }

    /// Runs until [`Sim::shutdown`] or, with `strict`, the first violation; then stops
    /// every task and waits for them.
    pub async fn wait(self) -> io::Result<Exit> {
        let outcome = match self.runner.await {
            Ok(outcome) => outcome,
            Err(join) => Err(io::Error::other(format!(
                "the world's runner failed: {join}"
            ))),
        };
        self.shutdown.stop();
        if let Err(join) = self.bus_server.await {
            tracing::error!(%join, "the socketcand server failed");
        }
        match self.control_server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "the control API failed"),
            Err(join) => tracing::error!(%join, "the control API failed"),
        }
        Ok(match outcome? {
            RunnerExit::Shutdown => Exit::Shutdown,
            RunnerExit::StrictViolation(violation) => Exit::StrictViolation(violation),
        })
    }
}
