//! The demand book's IO shell: every node subscribes to the guns' sessions and the
//! modules' states its peers publish on Zenoh, and keeps its [`DemandBook`] up to date, so
//! that whichever node leads plans from fresh telemetry. A payload that does not decode,
//! or names a gun or module the hub does not have, is logged, counted
//! (`ringhub_telemetry_rejected_total`) and skipped.

use std::time::Instant;

use prost::Message;
use ringhub_proto::v1;
use tokio::sync::watch;

use crate::demand::{DemandBook, TelemetryError};

/// Publications refused, by key kind (`gun` or `module`).
pub const TELEMETRY_REJECTED: &str = "ringhub_telemetry_rejected_total";

/// The subscriptions of one node.
#[derive(Debug)]
pub struct Telemetry {
    sessions: zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
    modules: zenoh::pubsub::Subscriber<zenoh::handlers::FifoChannelHandler<zenoh::sample::Sample>>,
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
        })
    }

    /// Feeds `book` until the subscriptions end; its receivers hear of a change only when
    /// the planner should plan again.
    pub async fn run(self, book: watch::Sender<DemandBook>) {
        loop {
            let (sample, kind) = tokio::select! {
                sample = self.sessions.recv_async() => (sample, "gun"),
                sample = self.modules.recv_async() => (sample, "module"),
            };
            let Ok(sample) = sample else { return };
            let bytes = sample.payload().to_bytes();
            let key = sample.key_expr().as_str();
            let heard = match kind {
                "gun" => hear(&book, &bytes, |b, s: v1::GunSession| {
                    b.handle_gun(&s, Instant::now())
                }),
                _ => hear(&book, &bytes, |b, s: v1::ModuleState| {
                    b.handle_module(&s, Instant::now())
                }),
            };
            if let Err(error) = heard {
                metrics::counter!(TELEMETRY_REJECTED, "kind" => kind).increment(1);
                tracing::warn!(%key, %error, "telemetry refused");
            }
        }
    }
}

/// Decodes one publication and hands it to `book`; what is wrong with it, if anything.
fn hear<M: Message + Default>(
    book: &watch::Sender<DemandBook>,
    bytes: &[u8],
    handle: impl FnOnce(&mut DemandBook, M) -> Result<bool, TelemetryError>,
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
