//! The simulator's socketcand server carries each cabinet's bus both ways, over real TCP:
//! a client sees the cabinet's PLC and module frames, a frame it sends reaches the world,
//! and every client of a bus sees the bus's traffic, including what the others send.

mod common;

use common::{connect, recv_until, start_demo};
use ringhub_node::can::CanBus;
use ringhub_proto::can::messages::{Contactors, RelayCommand};
use ringhub_proto::can::{CanFrame, CanId, CanMessage, PlcMessage, PlcSlot};

/// PlcHeartbeat's id for slot 0 (DBC `BO_ 416`), plus the slot.
const PLC_HEARTBEAT: u16 = 0x1A0;
/// ModuleStatus's id for address 0 (DBC `BO_ 2551185408` without the extended flag).
const MODULE_STATUS: u32 = 0x1810_0000;

fn plc_heartbeat_slot(frame: &CanFrame) -> Option<u16> {
    match frame.id() {
        CanId::Standard(id) if (PLC_HEARTBEAT..PLC_HEARTBEAT + 16).contains(&id) => {
            Some(id - PLC_HEARTBEAT)
        }
        _ => None,
    }
}

#[tokio::test]
async fn a_client_sees_every_plc_and_module_of_its_cabinet() {
    let sim = start_demo().await;
    let mut bus = connect(&sim, "cab-b").await;
    // cab-b has PLC slots 0 and 1 and modules at addresses 0..=3.
    let (mut slots, mut modules) = (Vec::new(), Vec::new());
    recv_until(
        &mut bus,
        "heartbeats of both PLCs and status of 4 modules",
        |frame| {
            if let Some(slot) = plc_heartbeat_slot(frame)
                && !slots.contains(&slot)
            {
                slots.push(slot);
            }
            if let CanId::Extended(id) = frame.id()
                && (MODULE_STATUS..MODULE_STATUS + 256).contains(&id)
                && !modules.contains(&(id - MODULE_STATUS))
            {
                modules.push(id - MODULE_STATUS);
            }
            slots.len() == 2 && modules.len() == 4
        },
    )
    .await;
    slots.sort_unstable();
    modules.sort_unstable();
    assert_eq!(slots, [0, 1]);
    assert_eq!(modules, [0, 1, 2, 3]);
}

#[tokio::test]
async fn a_frame_a_client_sends_reaches_the_world() {
    let sim = start_demo().await;
    let mut bus = connect(&sim, "cab-a").await;
    let slot = PlcSlot::new(1).expect("slot 1");
    // Everything open: allowed in any state, and acknowledged with the sequence number.
    let command = CanMessage::Plc {
        slot,
        message: PlcMessage::RelayCommand(RelayCommand {
            sequence: 42,
            closed: Contactors::default(),
            emergency: false,
        }),
    }
    .encode()
    .expect("encodes");
    bus.send(command).await.expect("send");
    recv_until(
        &mut bus,
        "RelayFeedback acknowledging sequence 42",
        |frame| {
            matches!(
                CanMessage::decode(frame),
                Ok(CanMessage::Plc { slot: s, message: PlcMessage::RelayFeedback(feedback) })
                    if s == slot && feedback.ack_sequence == 42
            )
        },
    )
    .await;
}

#[tokio::test]
async fn every_client_of_a_bus_sees_its_traffic() {
    let sim = start_demo().await;
    let mut node = connect(&sim, "cab-c").await;
    let mut sniffer = connect(&sim, "cab-c").await;
    let mut other_cabinet = connect(&sim, "cab-a").await;
    for client in [&mut node, &mut sniffer] {
        recv_until(client, "a PLC heartbeat", |f| {
            plc_heartbeat_slot(f).is_some()
        })
        .await;
    }
    // An id the catalog does not use: only the node can have put it on the bus.
    let marker = CanFrame::new(CanId::standard(0x7EE).expect("11-bit"), &[0xC0, 0xFF, 0xEE])
        .expect("3 bytes");
    node.send(marker).await.expect("send");
    let seen = recv_until(&mut sniffer, "the node's frame", |f| *f == marker).await;
    assert!(seen.timestamp_us > 0);
    // Another cabinet's bus does not carry it: after the marker comes a frame sent later
    // on cab-a, and the marker was never among cab-a's frames before it.
    let later = CanFrame::new(CanId::standard(0x7EF).expect("11-bit"), &[1]).expect("1 byte");
    let mut a_writer = connect(&sim, "cab-a").await;
    a_writer.send(later).await.expect("send");
    recv_until(&mut other_cabinet, "cab-a's own frame", |f| {
        assert_ne!(*f, marker, "cab-c's frame leaked onto cab-a");
        *f == later
    })
    .await;
}
