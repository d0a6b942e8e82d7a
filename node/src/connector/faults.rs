//! The controller's local fault list: raised once while a condition holds, cleared by
//! its rule (the condition going away, the EV leaving, or an operator), each change
//! reported as an event. The replicated, Raft-backed latch replaces this with the
//! cluster issue.

use std::time::Duration;

use ringhub_cluster::record::Evidence;

use super::snapshot::{FaultCode, LocalFault};

/// Active faults.
#[derive(Debug, Clone, Default)]
pub(super) struct FaultList {
    /// Active faults, oldest first.
    active: Vec<LocalFault>,
    /// Changes not yet reported: (fault, raised?).
    changes: Vec<(LocalFault, bool)>,
}

impl FaultList {
    /// Raises a fault unless the same code is active for the same subject. Returns whether
    /// it is new.
    pub(super) fn raise(
        &mut self,
        code: FaultCode,
        subject: &str,
        detail: String,
        now: Duration,
    ) -> bool {
        self.raise_with(code, subject, detail, Vec::new(), now)
    }

    /// [`Self::raise`] with the measurements that tripped it.
    pub(super) fn raise_with(
        &mut self,
        code: FaultCode,
        subject: &str,
        detail: String,
        evidence: Vec<Evidence>,
        now: Duration,
    ) -> bool {
        if self.is_active(code, subject) {
            return false;
        }
        let fault = LocalFault {
            evidence,
            code,
            subject: subject.to_owned(),
            detail,
            raised_at: now,
        };
        self.changes.push((fault.clone(), true));
        self.active.push(fault);
        true
    }

    /// Makes `fault` active again without reporting it: it is already latched (the hub
    /// record holds it). Returns whether it was not active yet.
    pub(super) fn restore(&mut self, fault: LocalFault) -> bool {
        if self.is_active(fault.code, &fault.subject) {
            return false;
        }
        self.active.push(fault);
        true
    }

    /// Clears a fault if it is active. Returns whether it was.
    pub(super) fn clear(&mut self, code: FaultCode, subject: &str) -> bool {
        let Some(index) = self
            .active
            .iter()
            .position(|f| f.code == code && f.subject == subject)
        else {
            return false;
        };
        let fault = self.active.remove(index);
        self.changes.push((fault, false));
        true
    }

    /// Raises or clears a condition-based fault; `seen` gives the detail and the
    /// measurements of a raise.
    pub(super) fn set(
        &mut self,
        code: FaultCode,
        subject: &str,
        holds: bool,
        seen: impl FnOnce() -> (String, Vec<Evidence>),
        now: Duration,
    ) {
        if holds {
            if !self.is_active(code, subject) {
                let (detail, evidence) = seen();
                self.raise_with(code, subject, detail, evidence, now);
            }
        } else {
            self.clear(code, subject);
        }
    }

    pub(super) fn is_active(&self, code: FaultCode, subject: &str) -> bool {
        self.active
            .iter()
            .any(|f| f.code == code && f.subject == subject)
    }

    pub(super) fn any(&self, code: FaultCode) -> bool {
        self.active.iter().any(|f| f.code == code)
    }

    pub(super) fn active(&self) -> &[LocalFault] {
        &self.active
    }

    /// The next change not yet reported: the fault, and whether it was raised.
    pub(super) fn poll_change(&mut self) -> Option<(LocalFault, bool)> {
        (!self.changes.is_empty()).then(|| self.changes.remove(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raised_once_and_cleared_once() {
        let mut list = FaultList::default();
        assert!(list.raise(
            FaultCode::PlcSilent,
            "segment 0",
            "no frame for 600 ms".into(),
            Duration::ZERO
        ));
        assert!(!list.raise(
            FaultCode::PlcSilent,
            "segment 0",
            "again".into(),
            Duration::ZERO
        ));
        assert!(list.raise(
            FaultCode::PlcSilent,
            "segment 1",
            "other".into(),
            Duration::ZERO
        ));
        assert_eq!(list.active().len(), 2);
        assert!(list.clear(FaultCode::PlcSilent, "segment 0"));
        assert!(!list.clear(FaultCode::PlcSilent, "segment 0"));
        let changes: Vec<bool> = std::iter::from_fn(|| list.poll_change())
            .map(|(_, raised)| raised)
            .collect();
        assert_eq!(changes, [true, true, false]);
    }
}
