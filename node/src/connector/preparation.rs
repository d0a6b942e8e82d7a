//! The gun's preparation (OCPP 1.6 status Preparing) and what may start one from the
//! CSMS: the connection timeout (OCPP 1.6 §9.1 ConnectionTimeOut, "interval from
//! beginning of status Preparing until incipient transaction is automatically
//! cancelled") and remote start (§5.11 RemoteStartTransaction).
//!
//! ```text
//!  token, no EV ──── timeout ──► token forgotten, Available    (TokenExpired)
//!  EV, no accepted token ─ timeout ─► Finished(ConnectionTimeout), Finishing until unplug
//!  either ──── authorised and plugged ──► WaitingForEv: the clock stops
//! ```
//!
//! The clock runs for a token waiting for its EV under any policy (under free vend only a
//! remote start puts one there), and for an EV waiting for its token under
//! [`AuthPolicy::Token`](super::AuthPolicy::Token).

use std::time::Instant;

use ringhub_proto::can::messages::AuthStatus;

use super::controller::SegmentController;
use super::session::{GunSession, State};
use super::snapshot::IdToken;
use super::{AuthDecision, CommandError, ConnectorEvent};

impl SegmentController {
    /// The gun has been preparing for longer than the connection timeout.
    pub(super) fn preparation_expired(&self, gun: &GunSession, now: Instant) -> bool {
        gun.preparing_since
            .is_some_and(|since| now.duration_since(since) >= self.setup.timing.connection_timeout)
    }

    /// A token whose EV never came: forgotten, with its decision, and the PLC told so.
    pub(super) fn expire_token(&mut self) {
        let Some(gun) = self.gun.as_mut() else { return };
        gun.preparing_since = None;
        gun.decision = None;
        let id = gun.setup.id;
        if let Some(token) = gun.token.take() {
            self.write_auth(AuthStatus::None);
            self.events
                .push_back(ConnectorEvent::TokenExpired { gun: id, token });
        }
    }

    /// [`super::Command::RemoteStart`]: the node already accepted `token`, so the PLC is
    /// told at once and no authorisation is asked for.
    pub(super) fn remote_start(
        &mut self,
        token: IdToken,
        now: Instant,
    ) -> Result<(), CommandError> {
        let blocking = self.blocking_fault();
        let gun = self.gun.as_mut().ok_or(CommandError::NoGun)?;
        if !gun.available {
            return Err(CommandError::Unavailable);
        }
        if let Some(code) = blocking {
            return Err(CommandError::Blocked(code));
        }
        let why = match gun.state {
            // Another driver's accepted card must not be taken over.
            State::Idle | State::Authorising if gun.decision == Some(AuthDecision::Accepted) => {
                "it holds an accepted token"
            }
            State::Idle | State::Authorising => {
                gun.token = Some(token);
                gun.decision = Some(AuthDecision::Accepted);
                gun.preparing_since.get_or_insert(now);
                self.write_auth(AuthStatus::Accepted);
                return Ok(());
            }
            State::Finished { .. } => "the last session's EV is still plugged in",
            State::WaitingForEv { .. }
            | State::Precharge { .. }
            | State::ClosingGc { .. }
            | State::Charging
            | State::RampingDown { .. }
            | State::OpeningGc { .. } => "a session is running",
        };
        Err(CommandError::Busy { why })
    }
}
