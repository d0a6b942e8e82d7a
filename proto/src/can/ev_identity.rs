//! Reassembly of the segmented EV identity transfer (DBC message `EvIdentity`).
//!
//! The PLC learns the EV's MAC during SLAC (ISO 15118-3) and its contract id (EMAID)
//! during ISO 15118-2 PaymentDetails; both are id tokens (AutoCharge and Plug & Charge).
//! They do not fit one frame, so the PLC sends a header (MAC and EMAID length) and then
//! up to three frames of six characters, all with one transfer id:
//!
//! ```text
//!   idx 0: [tid|0] MAC0 MAC1 MAC2 MAC3 MAC4 MAC5 LEN
//!   idx 1: [tid|1] C0 C1 C2 C3 C4 C5 --
//!   idx 2: [tid|2] C6 …
//! ```
//!
//! An identity is an authorisation input, so a partial or mixed one must never come out:
//! frames must arrive in order with one transfer id, within a timeout. A new header, a
//! frame of another transfer, a gap or the timeout drops the transfer in progress, and
//! the drop is reported so that it can be counted.
//!
//! Sans-IO: feed frames with [`Assembler::handle_frame`] and expiries with
//! [`Assembler::handle_timeout`]; take results from [`Assembler::poll_event`]; ask
//! [`Assembler::poll_timeout`] when to call again.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::messages::{
    EMAID_CHARS_PER_FRAME, EMAID_MAX_LEN, EvIdentityFrame, EvIdentityPart, MacAddress, PlcSlot,
};

/// How long a whole transfer may take. The PLC sends its frames back to back, so a
/// transfer that has not finished in this time has lost a frame.
pub const DEFAULT_TRANSFER_TIMEOUT: Duration = Duration::from_millis(500);

/// A complete EV identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvIdentity {
    /// EV MAC from SLAC.
    pub mac: MacAddress,
    /// Contract id, when the EV presented one.
    pub emaid: Option<String>,
}

/// Why an EV identity cannot be sent as a transfer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("EMAID {0:?} is longer than {EMAID_MAX_LEN} characters")]
    EmaidTooLong(String),
    #[error("EMAID {0:?} has characters other than ASCII letters, digits and '-'")]
    EmaidCharacters(String),
}

fn valid_emaid_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

impl EvIdentity {
    /// The frames of one transfer, header first.
    pub fn frames(&self, transfer_id: u8) -> Result<Vec<EvIdentityFrame>, IdentityError> {
        let emaid = self.emaid.as_deref().unwrap_or_default();
        if emaid.len() > EMAID_MAX_LEN {
            return Err(IdentityError::EmaidTooLong(emaid.to_owned()));
        }
        if !emaid.bytes().all(valid_emaid_char) {
            return Err(IdentityError::EmaidCharacters(emaid.to_owned()));
        }
        let transfer_id = transfer_id & 0x0F;
        let header = EvIdentityPart::Header {
            mac: self.mac,
            emaid_len: emaid.len() as u8,
        };
        let mut frames = vec![EvIdentityFrame {
            transfer_id,
            part: header,
        }];
        for (i, chunk) in emaid.as_bytes().chunks(EMAID_CHARS_PER_FRAME).enumerate() {
            let mut chars = [0; EMAID_CHARS_PER_FRAME];
            chars[..chunk.len()].copy_from_slice(chunk);
            frames.push(EvIdentityFrame {
                transfer_id,
                part: EvIdentityPart::Emaid {
                    index: i as u8 + 1,
                    chars,
                },
            });
        }
        Ok(frames)
    }
}

/// What the assembler reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssemblyEvent {
    /// A whole identity arrived.
    Complete { slot: PlcSlot, identity: EvIdentity },
    /// A transfer, or a stray frame, was thrown away.
    Dropped {
        slot: PlcSlot,
        transfer_id: u8,
        reason: DropReason,
    },
}

/// Why a transfer was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A new header arrived before this transfer finished.
    Superseded,
    /// A frame of another transfer id arrived in the middle of this one.
    Interleaved { other: u8 },
    /// A frame index was skipped or repeated.
    OutOfOrder { expected: u8, got: u8 },
    /// An EMAID frame arrived with no transfer in progress.
    Orphan,
    /// The transfer did not finish within the timeout.
    TimedOut,
    /// The EMAID has characters an EMAID cannot have, or non-zero padding.
    BadEmaid,
}

/// One transfer in progress.
#[derive(Debug, Clone)]
struct Transfer {
    /// Transfer id from the header.
    id: u8,
    /// MAC from the header.
    mac: MacAddress,
    /// EMAID length announced by the header.
    emaid_len: usize,
    /// Characters received so far, padding included.
    chars: Vec<u8>,
    /// Index the next frame must have.
    next_index: u8,
    /// When the transfer must be complete.
    deadline: Instant,
}

/// Reassembles EV identities for every PLC slot of a bus.
#[derive(Debug, Clone)]
pub struct Assembler {
    /// How long a transfer may take.
    timeout: Duration,
    /// Transfers in progress, per slot.
    transfers: HashMap<PlcSlot, Transfer>,
    /// Results not yet polled.
    events: VecDeque<AssemblyEvent>,
}

impl Default for Assembler {
    fn default() -> Self {
        Self::new(DEFAULT_TRANSFER_TIMEOUT)
    }
}

impl Assembler {
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            transfers: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    fn drop_transfer(&mut self, slot: PlcSlot, reason: DropReason) {
        if let Some(transfer) = self.transfers.remove(&slot) {
            self.events.push_back(AssemblyEvent::Dropped {
                slot,
                transfer_id: transfer.id,
                reason,
            });
        }
    }

    /// Feeds one frame received from `slot` at `now`.
    pub fn handle_frame(&mut self, slot: PlcSlot, frame: EvIdentityFrame, now: Instant) {
        self.handle_timeout(now);
        match frame.part {
            EvIdentityPart::Header { mac, emaid_len } => {
                self.drop_transfer(slot, DropReason::Superseded);
                let transfer = Transfer {
                    id: frame.transfer_id,
                    mac,
                    emaid_len: usize::from(emaid_len),
                    chars: Vec::with_capacity(EMAID_MAX_LEN),
                    next_index: 1,
                    deadline: now + self.timeout,
                };
                self.transfers.insert(slot, transfer);
                self.complete_if_done(slot);
            }
            EvIdentityPart::Emaid { index, chars } => {
                let Some(transfer) = self.transfers.get_mut(&slot) else {
                    let reason = DropReason::Orphan;
                    self.events.push_back(AssemblyEvent::Dropped {
                        slot,
                        transfer_id: frame.transfer_id,
                        reason,
                    });
                    return;
                };
                if transfer.id != frame.transfer_id {
                    self.drop_transfer(
                        slot,
                        DropReason::Interleaved {
                            other: frame.transfer_id,
                        },
                    );
                } else if transfer.next_index != index {
                    let expected = transfer.next_index;
                    self.drop_transfer(
                        slot,
                        DropReason::OutOfOrder {
                            expected,
                            got: index,
                        },
                    );
                } else {
                    transfer.chars.extend_from_slice(&chars);
                    transfer.next_index += 1;
                    self.complete_if_done(slot);
                }
            }
        }
    }

    fn complete_if_done(&mut self, slot: PlcSlot) {
        let Some(transfer) = self.transfers.get(&slot) else {
            return;
        };
        if transfer.chars.len() < transfer.emaid_len {
            return;
        }
        let (emaid, padding) = transfer.chars.split_at(transfer.emaid_len);
        if !emaid.iter().copied().all(valid_emaid_char) || padding.iter().any(|&c| c != 0) {
            self.drop_transfer(slot, DropReason::BadEmaid);
            return;
        }
        let emaid = (!emaid.is_empty()).then(|| String::from_utf8_lossy(emaid).into_owned());
        let identity = EvIdentity {
            mac: transfer.mac,
            emaid,
        };
        self.transfers.remove(&slot);
        self.events
            .push_back(AssemblyEvent::Complete { slot, identity });
    }

    /// Drops every transfer whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired: Vec<PlcSlot> = self
            .transfers
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(slot, _)| *slot)
            .collect();
        expired.sort();
        for slot in expired {
            self.drop_transfer(slot, DropReason::TimedOut);
        }
    }

    /// When [`Self::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.transfers.values().map(|t| t.deadline).min()
    }

    /// The next result, oldest first.
    pub fn poll_event(&mut self) -> Option<AssemblyEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddress = MacAddress([0x00, 0x7D, 0xFA, 0x12, 0x34, 0x56]);

    fn slot(n: u8) -> PlcSlot {
        PlcSlot::new(n).unwrap()
    }

    fn identity(emaid: Option<&str>) -> EvIdentity {
        EvIdentity {
            mac: MAC,
            emaid: emaid.map(str::to_owned),
        }
    }

    fn events(assembler: &mut Assembler) -> Vec<AssemblyEvent> {
        std::iter::from_fn(|| assembler.poll_event()).collect()
    }

    #[test]
    fn a_whole_transfer_yields_the_identity() {
        let (mut assembler, t0) = (Assembler::default(), Instant::now());
        let sent = identity(Some("DE8AA001234567"));
        let frames = sent.frames(3).unwrap();
        assert_eq!(
            frames.len(),
            4,
            "header and three EMAID frames for 14 characters"
        );
        for (i, frame) in frames.into_iter().enumerate() {
            assert!(
                events(&mut assembler).is_empty(),
                "nothing before the last frame"
            );
            assembler.handle_frame(slot(1), frame, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(
            events(&mut assembler),
            [AssemblyEvent::Complete {
                slot: slot(1),
                identity: sent
            }]
        );
        assert_eq!(assembler.poll_timeout(), None);
    }

    #[test]
    fn a_mac_only_identity_completes_on_its_header() {
        let mut assembler = Assembler::default();
        let frames = identity(None).frames(0).unwrap();
        assert_eq!(frames.len(), 1);
        assembler.handle_frame(slot(0), frames[0], Instant::now());
        assert_eq!(
            events(&mut assembler),
            [AssemblyEvent::Complete {
                slot: slot(0),
                identity: identity(None)
            }]
        );
    }

    #[test]
    fn slots_reassemble_independently() {
        let (mut assembler, now) = (Assembler::default(), Instant::now());
        let a = identity(Some("AAAAAAAAAAAA"));
        let b = EvIdentity {
            mac: MacAddress([2; 6]),
            emaid: Some("BBBBBBB".into()),
        };
        for (fa, fb) in a.frames(1).unwrap().into_iter().zip(b.frames(1).unwrap()) {
            assembler.handle_frame(slot(0), fa, now);
            assembler.handle_frame(slot(1), fb, now);
        }
        let got = events(&mut assembler);
        assert!(got.contains(&AssemblyEvent::Complete {
            slot: slot(0),
            identity: a
        }));
        assert!(got.contains(&AssemblyEvent::Complete {
            slot: slot(1),
            identity: b
        }));
    }

    #[test]
    fn an_interleaved_transfer_is_dropped_not_mixed() {
        let (mut assembler, now) = (Assembler::default(), Instant::now());
        let old = identity(Some("OLDOLDOLDOLD")).frames(4).unwrap();
        let new = identity(Some("NEWNEWNEWNEW")).frames(5).unwrap();
        assembler.handle_frame(slot(2), old[0], now);
        assembler.handle_frame(slot(2), new[1], now);
        assert_eq!(
            events(&mut assembler),
            [AssemblyEvent::Dropped {
                slot: slot(2),
                transfer_id: 4,
                reason: DropReason::Interleaved { other: 5 }
            }]
        );
        // The rest of the old transfer is stray now.
        assembler.handle_frame(slot(2), old[2], now);
        assert_eq!(
            events(&mut assembler),
            [AssemblyEvent::Dropped {
                slot: slot(2),
                transfer_id: 4,
                reason: DropReason::Orphan
            }]
        );
    }

    #[test]
    fn a_new_header_supersedes_an_unfinished_transfer() {
        let (mut assembler, now) = (Assembler::default(), Instant::now());
        let old = identity(Some("OLDOLDOLDOLD")).frames(4).unwrap();
        let new = identity(Some("NEW")).frames(5).unwrap();
        assembler.handle_frame(slot(2), old[0], now);
        assembler.handle_frame(slot(2), new[0], now);
        assembler.handle_frame(slot(2), new[1], now);
        assert_eq!(
            events(&mut assembler),
            [
                AssemblyEvent::Dropped {
                    slot: slot(2),
                    transfer_id: 4,
                    reason: DropReason::Superseded
                },
                AssemblyEvent::Complete {
                    slot: slot(2),
                    identity: identity(Some("NEW"))
                },
            ]
        );
    }

    #[test]
    fn a_gap_drops_the_transfer() {
        let (mut assembler, now) = (Assembler::default(), Instant::now());
        let frames = identity(Some("DE8AA001234567")).frames(7).unwrap();
        assembler.handle_frame(slot(0), frames[0], now);
        assembler.handle_frame(slot(0), frames[2], now);
        assert_eq!(
            events(&mut assembler),
            [AssemblyEvent::Dropped {
                slot: slot(0),
                transfer_id: 7,
                reason: DropReason::OutOfOrder {
                    expected: 1,
                    got: 2
                }
            }]
        );
    }

    #[test]
    fn a_stale_transfer_times_out() {
        let (mut assembler, t0) = (Assembler::new(Duration::from_millis(100)), Instant::now());
        let frames = identity(Some("DE8AA001234567")).frames(7).unwrap();
        assembler.handle_frame(slot(0), frames[0], t0);
        assert_eq!(
            assembler.poll_timeout(),
            Some(t0 + Duration::from_millis(100))
        );
        assembler.handle_timeout(t0 + Duration::from_millis(99));
        assert!(events(&mut assembler).is_empty());
        // A late frame finds the transfer expired: it is dropped, then the frame is stray.
        assembler.handle_frame(slot(0), frames[1], t0 + Duration::from_millis(100));
        assert_eq!(
            events(&mut assembler),
            [
                AssemblyEvent::Dropped {
                    slot: slot(0),
                    transfer_id: 7,
                    reason: DropReason::TimedOut
                },
                AssemblyEvent::Dropped {
                    slot: slot(0),
                    transfer_id: 7,
                    reason: DropReason::Orphan
                },
            ]
        );
    }

    #[test]
    fn bad_characters_or_padding_drop_the_transfer() {
        let (mut assembler, now) = (Assembler::default(), Instant::now());
        let header = EvIdentityFrame {
            transfer_id: 1,
            part: EvIdentityPart::Header {
                mac: MAC,
                emaid_len: 4,
            },
        };
        let body = EvIdentityFrame {
            transfer_id: 1,
            part: EvIdentityPart::Emaid {
                index: 1,
                chars: *b"AB\0\0XY",
            },
        };
        assembler.handle_frame(slot(0), header, now);
        assembler.handle_frame(slot(0), body, now);
        assert_eq!(
            events(&mut assembler),
            [AssemblyEvent::Dropped {
                slot: slot(0),
                transfer_id: 1,
                reason: DropReason::BadEmaid
            }]
        );
    }

    #[test]
    fn sender_refuses_what_cannot_be_sent() {
        assert!(matches!(
            identity(Some("X".repeat(19).as_str())).frames(0),
            Err(IdentityError::EmaidTooLong(_))
        ));
        assert!(matches!(
            identity(Some("DE*1")).frames(0),
            Err(IdentityError::EmaidCharacters(_))
        ));
    }
}
