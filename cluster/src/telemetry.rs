//! The IO shell of the books kept from telemetry: every node subscribes to the guns'
//! sessions, the modules' states and the nodes' fault conditions its peers publish on
//! Zenoh, and keeps its [`DemandBook`] and [`ConditionBook`] up to date, so that whichever
//! node leads plans and clears from fresh telemetry. A payload that does not decode, or
//! names a gun, module or node the hub does not have, is logged, counted
//! (`ringhub_telemetry_rejected_total`) and skipped.

use std::time::Instant;

use prost::Message;
use ringhub_proto::v1;
use tokio::sync::watch;

use crate::conditions::ConditionBook;
use crate::demand::DemandBook;

/// Publications refused, by key kind (`gun`, `module` or `conditions`).
pub const TELEMETRY_REJECTED: &str = "ringhub_telemetry_rejected_total";

/// The subscriptions of one node.
#[derive(Debug)]
pub struct Telemetry {
    sessions: zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
    modules: zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
    conditions:
        zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
}

impl Telemetry {
    /// Subscribes on `session` to hub `hub`'s guns and modules.
    pub async fn subscribe(session: &zenoh::Session, hub: &str) -> Result<Self, zenoh::Error> {
        metrics::describe_counter!(
            TELEMETRY_REJECTED,
            "Gun session and module state publications the planner's demand book refused"
        );
        Ok(Self {
            sessions: session
                .declare_subscriber(format!("ringhub/{hub}/gun/*/session"))
                .await?,
            modules: session
                .declare_subscriber(format!("ringhub/{hub}/module/*/state"))
                .await?,
            conditions: session
                .declare_subscriber(format!("ringhub/{hub}/node/*/conditions"))
                .await?,
        })
    }

    /// Feeds `book` and `conditions` until the subscriptions end. The book's receivers
    /// hear of a change only when the planner should plan again; the conditions' never
    /// (they come five times a second from every node): read them when judging.
    pub async fn run(
        self,
        book: watch::Sender<DemandBook>,
        conditions: watch::Sender<ConditionBook>,
    ) {
        loop {
            let (sample, kind) = tokio::select! {
                sample = self.sessions.recv_async() => (sample, "gun"),
                sample = self.modules.recv_async() => (sample, "module"),
                sample = self.conditions.recv_async() => (sample, "conditions"),
            };
            let Ok(sample) = sample else { return };
            let bytes = sample.payload().to_bytes();
            let key = sample.key_expr().as_str();
            let heard = match kind {
                "gun" => hear(&book, &bytes, |b, s: v1::GunSession| {
                    b.handle_gun(&s, Instant::now())
                }),
                "module" => hear(&book, &bytes, |b, s: v1::ModuleState| {
                    b.handle_module(&s, Instant::now())
                }),
                _ => hear(&conditions, &bytes, |b, s: v1::FaultConditions| {
                    b.handle(&s, Instant::now()).map(|()| false)
                }),
            };
            if let Err(error) = heard {
                metrics::counter!(TELEMETRY_REJECTED, "kind" => kind).increment(1);
                tracing::warn!(%key, %error, "telemetry refused");
            }
        }
    }
}

/// Decodes one publication and hands it to `book`, whose receivers hear of it when
/// `handle` says it changed something; what is wrong with it, if anything.
fn hear<B, M: Message + Default, E: std::fmt::Display>(
    book: &watch::Sender<B>,
    bytes: &[u8],
    handle: impl FnOnce(&mut B, M) -> Result<bool, E>,
) -> Result<(), String> {
    let message = M::decode(bytes).map_err(|e| format!("does not decode: {e}"))?;
    let mut outcome = Ok(());
    book.send_if_modified(|book| match handle(book, message) {
        Ok(changed) => changed,
        Err(error) => {
            outcome = Err(error.to_string());
            false
        }
    });
    outcome
}
