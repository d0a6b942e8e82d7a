//! The Zenoh shell of the island [`Wire`] (keys in `proto/.../island.proto`):
//!
//! ```text
//!   ringhub/<hub>/seg/*/state              SegmentState  heard: each segment's tie feedback
//!   ringhub/<hub>/island/<gun>/host        IslandHost    heard and, for our hosts, said
//!   ringhub/<hub>/island/<gun>/donor/<seg> IslandDonor   heard and, for our donors, said
//! ```
//!
//! What this node says is handed over on a watch channel by the control task and put on
//! change and every [`PERIOD`]. Its own publications come back through its own
//! subscribers, so hosts and donors in one cabinet meet the same way as across
//! cabinets. A payload that does not decode, or says what cannot be, is refused: logged,
//! counted in `ringhub_island_rejected_total`, and the wire keeps what it had.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use ringhub_cluster::record::Epoch;
use ringhub_proto::config::{GunId, SegmentId};
use ringhub_proto::units::{Amps, Volts};
use ringhub_proto::v1;
use tokio::sync::watch;
use zenoh::Session;
use zenoh::handlers::FifoChannelHandler;
use zenoh::pubsub::Subscriber;
use zenoh::sample::Sample;

use super::Wire;
use crate::connector::{DonorStatus, HostSetpoint};
use crate::publish::{self, Origin, Sequencer};

/// How often what this node says is repeated.
pub const PERIOD: Duration = Duration::from_millis(100);
const REJECTED: &str = "ringhub_island_rejected_total";

/// One thing this node says about an island.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    /// As the host of `gun`'s island, on `segment`.
    Host {
        gun: GunId,
        segment: SegmentId,
        epoch: Epoch,
        setpoint: HostSetpoint,
    },
    /// As a donor of `gun`'s island, on `segment`.
    Donor {
        gun: GunId,
        segment: SegmentId,
        epoch: Epoch,
        status: DonorStatus,
    },
}

/// Whether `now` differs from what the link was last told enough to say it at once;
/// smaller drifts go out with the next periodic repetition.
pub fn changed(before: &[Outgoing], now: &[Outgoing]) -> bool {
    before.len() != now.len()
        || before.iter().zip(now).any(|pair| match pair {
            (
                Outgoing::Host {
                    gun: g1,
                    segment: s1,
                    epoch: e1,
                    setpoint: a,
                },
                Outgoing::Host {
                    gun: g2,
                    segment: s2,
                    epoch: e2,
                    setpoint: b,
                },
            ) => {
                (g1, s1, e1) != (g2, s2, e2)
                    || (a.share - b.share).abs() > 0.02
                    || (a.voltage.0 - b.voltage.0).abs() > 5.0
                    || (a.bus_voltage.0 - b.bus_voltage.0).abs() > 5.0
            }
            (
                Outgoing::Donor {
                    gun: g1,
                    segment: s1,
                    epoch: e1,
                    status: a,
                },
                Outgoing::Donor {
                    gun: g2,
                    segment: s2,
                    epoch: e2,
                    status: b,
                },
            ) => {
                (g1, s1, e1) != (g2, s2, e2)
                    || a.connected != b.connected
                    || (a.capability.0 - b.capability.0).abs() > 5.0
            }
            _ => true,
        })
}

type Fifo = Subscriber<FifoChannelHandler<Sample>>;

/// Feeds `wire` from the ring and says `outgoing` until `shutdown`.
pub async fn run(
    session: Session,
    origin: Origin,
    wire: Arc<Mutex<Wire>>,
    mut outgoing: watch::Receiver<Vec<Outgoing>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), zenoh::Error> {
    metrics::describe_counter!(
        REJECTED,
        "Island and segment publications the island link refused"
    );
    let prefix = format!("ringhub/{}", origin.hub);
    let segments: Fifo = session
        .declare_subscriber(format!("{prefix}/seg/*/state"))
        .await?;
    let hosts: Fifo = session
        .declare_subscriber(format!("{prefix}/island/*/host"))
        .await?;
    let donors: Fifo = session
        .declare_subscriber(format!("{prefix}/island/*/donor/*"))
        .await?;
    let mut sequencer = Sequencer::new(origin);
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let (sample, kind) = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            changed = outgoing.changed() => {
                if changed.is_err() { return Ok(()) }
                let now = outgoing.borrow_and_update().clone();
                say(&session, &prefix, &mut sequencer, &now).await;
                continue;
            }
            _ = tick.tick() => {
                let now = outgoing.borrow().clone();
                say(&session, &prefix, &mut sequencer, &now).await;
                continue;
            }
            sample = segments.recv_async() => (sample, "segment"),
            sample = hosts.recv_async() => (sample, "host"),
            sample = donors.recv_async() => (sample, "donor"),
        };
        let Ok(sample) = sample else { return Ok(()) };
        let bytes = sample.payload().to_bytes();
        let now = Instant::now();
        let heard = match kind {
            "segment" => hear_segment(&bytes).map(|tie| {
                if let Some((segment, closed)) = tie {
                    lock(&wire).tie(segment, closed, now);
                }
            }),
            "host" => hear_host(&bytes).map(|(gun, setpoint)| lock(&wire).host(gun, setpoint, now)),
            _ => hear_donor(&bytes)
                .map(|(gun, segment, status)| lock(&wire).donor(gun, segment, status, now)),
        };
        if let Err(error) = heard {
            metrics::counter!(REJECTED, "kind" => kind).increment(1);
            tracing::warn!(key = %sample.key_expr(), %error, "island publication refused");
        }
    }
}

fn lock(wire: &Mutex<Wire>) -> std::sync::MutexGuard<'_, Wire> {
    wire.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn say(session: &Session, prefix: &str, sequencer: &mut Sequencer, outgoing: &[Outgoing]) {
    let now = publish::unix_ms();
    for message in outgoing {
        let (key, bytes) = match *message {
            Outgoing::Host {
                gun,
                segment,
                epoch,
                setpoint,
            } => {
                let key = format!("{prefix}/island/{}/host", gun.0);
                let body = v1::IslandHost {
                    header: Some(sequencer.next(&key, now)),
                    gun_id: gun.0.into(),
                    epoch: epoch.0,
                    segment_id: segment.0.into(),
                    bus_voltage_dv: decis(setpoint.bus_voltage.0),
                    voltage_dv: decis(setpoint.voltage.0),
                    share_ppm: (setpoint.share.clamp(0.0, 1.0) * 1e6).round() as u32,
                };
                (key, body.encode_to_vec())
            }
            Outgoing::Donor {
                gun,
                segment,
                epoch,
                status,
            } => {
                let key = format!("{prefix}/island/{}/donor/{}", gun.0, segment.0);
                let body = v1::IslandDonor {
                    header: Some(sequencer.next(&key, now)),
                    gun_id: gun.0.into(),
                    epoch: epoch.0,
                    segment_id: segment.0.into(),
                    connected: status.connected,
                    capability_da: decis(status.capability.0),
                };
                (key, body.encode_to_vec())
            }
        };
        if let Err(error) = session.put(&key, bytes).await {
            tracing::debug!(%key, %error, "island publication not sent");
        }
    }
}

/// Tenths, as the wire's unsigned deci-units; negative values are 0.
fn decis(value: f64) -> u32 {
    (value.max(0.0) * 10.0).round().min(f64::from(u32::MAX)) as u32
}

fn id(value: u32, what: &str) -> Result<u16, String> {
    u16::try_from(value).map_err(|_| format!("{what} {value} is out of range"))
}

/// A segment's tie feedback, if it has a tie and reports it.
fn hear_segment(bytes: &[u8]) -> Result<Option<(SegmentId, bool)>, String> {
    let state = v1::SegmentState::decode(bytes).map_err(|e| format!("does not decode: {e}"))?;
    let segment = SegmentId(id(state.segment_id, "segment_id")?);
    Ok(state
        .tie_contactor
        .and_then(|tie| match v1::ContactorState::try_from(tie.feedback) {
            Ok(v1::ContactorState::Closed) => Some((segment, true)),
            Ok(v1::ContactorState::Open) => Some((segment, false)),
            _ => None,
        }))
}

fn hear_host(bytes: &[u8]) -> Result<(GunId, HostSetpoint), String> {
    let host = v1::IslandHost::decode(bytes).map_err(|e| format!("does not decode: {e}"))?;
    if host.share_ppm > 1_000_000 {
        return Err(format!("share_ppm {} is above 1000000", host.share_ppm));
    }
    Ok((
        GunId(id(host.gun_id, "gun_id")?),
        HostSetpoint {
            bus_voltage: Volts(f64::from(host.bus_voltage_dv) / 10.0),
            voltage: Volts(f64::from(host.voltage_dv) / 10.0),
            share: f64::from(host.share_ppm) / 1e6,
        },
    ))
}

fn hear_donor(bytes: &[u8]) -> Result<(GunId, SegmentId, DonorStatus), String> {
    let donor = v1::IslandDonor::decode(bytes).map_err(|e| format!("does not decode: {e}"))?;
    Ok((
        GunId(id(donor.gun_id, "gun_id")?),
        SegmentId(id(donor.segment_id, "segment_id")?),
        DonorStatus {
            connected: donor.connected,
            capability: Amps(f64::from(donor.capability_da) / 10.0),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_heard_is_checked() {
        let host = v1::IslandHost {
            gun_id: 3,
            bus_voltage_dv: 4_000,
            voltage_dv: 4_105,
            share_ppm: 250_000,
            ..Default::default()
        };
        let (gun, setpoint) = hear_host(&host.encode_to_vec()).expect("a good setpoint");
        assert_eq!(gun, GunId(3));
        assert_eq!(setpoint.voltage, Volts(410.5));
        assert_eq!(setpoint.share, 0.25);
        let greedy = v1::IslandHost {
            share_ppm: 1_000_001,
            ..host
        };
        let error = hear_host(&greedy.encode_to_vec()).expect_err("more than all");
        assert!(error.contains("share_ppm 1000001"), "{error}");
        let error = hear_donor(&[0xFF, 0xFF]).expect_err("garbage");
        assert!(error.contains("does not decode"), "{error}");
        let far = v1::IslandDonor {
            gun_id: 70_000,
            ..Default::default()
        };
        let error = hear_donor(&far.encode_to_vec()).expect_err("no such gun");
        assert!(error.contains("gun_id 70000"), "{error}");
    }
}
