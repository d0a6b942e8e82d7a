//! Connector statuses and when to report them (OCPP 1.6 §4.9 StatusNotification, §9.1.20
//! MinimumStatusDuration).
//!
//! The node sets each connector's status (connector 0 is the charge point itself) as it
//! changes; a status is reported once it has lasted MinimumStatusDuration. A status
//! replaced sooner is never reported (the newest one wins when the duration expires), and
//! a status that returns to the last reported one before then reports nothing at all.
//!
//! ```text
//! set_status ──► current (since t) ──t + MinimumStatusDuration──► StatusNotification
//!                    │ differs from reported?      (only while registered)
//! ```

use std::time::{Duration, Instant};

use super::super::messages::charge_point::{
    ChargePointErrorCode, ChargePointStatus, StatusNotificationRequest,
};
use super::super::types::{CiString50, DateTime};

/// The optional free-text parts of a StatusNotification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusDetail {
    /// Additional free-form information (`info`).
    pub info: Option<CiString50>,
    /// The vendor-specific error code of the node's fault (`vendorErrorCode`).
    pub vendor_error_code: Option<CiString50>,
}

/// What a StatusNotification says about one connector.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    /// The status.
    status: ChargePointStatus,
    /// The error code (NoError unless Faulted or warning).
    error_code: ChargePointErrorCode,
    /// The optional texts.
    detail: StatusDetail,
}

/// One connector's status.
#[derive(Debug, Clone)]
struct Connector {
    /// The status now, and since when.
    current: Option<(Report, Instant)>,
    /// The status last handed to the outbox, if any since registration.
    reported: Option<Report>,
}

/// A connector id outside 0..=NumberOfConnectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connector {connector} does not exist (this charge point has {count})")]
pub struct UnknownConnector {
    /// The id given.
    pub connector: u32,
    /// NumberOfConnectors.
    pub count: u32,
}

/// The statuses of connector 0 (the charge point) and connectors 1..=N.
#[derive(Debug, Clone)]
pub(super) struct Statuses {
    /// Indexed by connector id.
    connectors: Vec<Connector>,
}

impl Statuses {
    /// No status known yet for `count` connectors plus connector 0.
    pub(super) fn new(count: u32) -> Self {
        let connector = Connector {
            current: None,
            reported: None,
        };
        Self {
            connectors: vec![connector; count as usize + 1],
        }
    }

    /// Records a status; returns whether it differs from the current one.
    pub(super) fn set(
        &mut self,
        connector: u32,
        status: ChargePointStatus,
        error_code: ChargePointErrorCode,
        detail: StatusDetail,
        now: Instant,
    ) -> Result<bool, UnknownConnector> {
        let count = self.connectors.len() as u32 - 1;
        let slot = self
            .connectors
            .get_mut(connector as usize)
            .ok_or(UnknownConnector { connector, count })?;
        let report = Report {
            status,
            error_code,
            detail,
        };
        if slot.current.as_ref().is_some_and(|(r, _)| *r == report) {
            return Ok(false);
        }
        slot.current = Some((report, now));
        Ok(true)
    }

    /// The current status of `connector`.
    pub(super) fn current(&self, connector: u32) -> Option<ChargePointStatus> {
        let (report, _) = self.connectors.get(connector as usize)?.current.as_ref()?;
        Some(report.status)
    }

    /// Forgets what was reported, so that every known status is reported again (after a
    /// BootNotification is accepted the CSMS knows nothing).
    pub(super) fn forget_reported(&mut self) {
        for c in &mut self.connectors {
            c.reported = None;
        }
    }

    /// When the earliest unreported status is due, given MinimumStatusDuration `min`.
    pub(super) fn next_due(&self, min: Duration) -> Option<Instant> {
        self.connectors
            .iter()
            .filter_map(|c| {
                let (report, since) = c.current.as_ref()?;
                (c.reported.as_ref() != Some(report)).then_some(*since + min)
            })
            .min()
    }

    /// The StatusNotifications due at `now`, marked reported. `wall` turns an instant into
    /// the date-time to stamp it with, when the clock is known.
    pub(super) fn take_due(
        &mut self,
        min: Duration,
        now: Instant,
        wall: impl Fn(Instant) -> Option<DateTime>,
    ) -> Vec<StatusNotificationRequest> {
        let mut due = Vec::new();
        for (id, c) in self.connectors.iter_mut().enumerate() {
            let Some((report, since)) = &c.current else {
                continue;
            };
            if c.reported.as_ref() == Some(report) || *since + min > now {
                continue;
            }
            due.push(notification(id as u32, report, wall(*since)));
            c.reported = Some(report.clone());
        }
        due
    }

    /// StatusNotifications of the current status of `connector`, or of every connector
    /// when `None` (TriggerMessage), marked reported.
    pub(super) fn take_current(
        &mut self,
        connector: Option<u32>,
        wall: impl Fn(Instant) -> Option<DateTime>,
    ) -> Vec<StatusNotificationRequest> {
        let mut out = Vec::new();
        for (id, c) in self.connectors.iter_mut().enumerate() {
            if connector.is_some_and(|want| want as usize != id) {
                continue;
            }
            if let Some((report, since)) = &c.current {
                out.push(notification(id as u32, report, wall(*since)));
                c.reported = Some(report.clone());
            }
        }
        out
    }

    /// Whether `connector` exists.
    pub(super) fn exists(&self, connector: u32) -> bool {
        (connector as usize) < self.connectors.len()
    }
}

/// The StatusNotification.req reporting `report` for `connector`.
fn notification(
    connector: u32,
    report: &Report,
    timestamp: Option<DateTime>,
) -> StatusNotificationRequest {
    StatusNotificationRequest {
        connector_id: connector,
        error_code: report.error_code,
        info: report.detail.info.clone(),
        status: report.status,
        timestamp,
        vendor_id: None,
        vendor_error_code: report.detail.vendor_error_code.clone(),
    }
}
