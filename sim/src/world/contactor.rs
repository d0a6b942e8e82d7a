//! A DC contactor: it follows its command after an operate (close) or release (open)
//! delay, reports its auxiliary-contact feedback, and can be made to fail the ways real
//! ones do: welded (will not open) or failing to close.

/// A failure mode injected into a contactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactorFault {
    /// The contacts are welded: once closed, the contactor stays closed whatever it is told.
    Welded,
    /// The coil or mechanism is dead: the contactor stays open whatever it is told.
    FailToClose,
}

/// One contactor.
#[derive(Debug, Clone)]
pub struct Contactor {
    /// What it was last told.
    commanded: bool,
    /// Where the contacts are.
    closed: bool,
    /// When the contacts reach the commanded position, if they are moving.
    settles_at: Option<u64>,
    /// Time from command to contacts closed, in ms.
    operate_ms: u64,
    /// Time from command to contacts open, in ms.
    release_ms: u64,
    /// Injected failure.
    fault: Option<ContactorFault>,
    /// The last open command carried the emergency flag (S4 allows opening under load then).
    emergency_open: bool,
}

impl Contactor {
    pub fn new(operate_ms: u64, release_ms: u64) -> Self {
        Self {
            commanded: false,
            closed: false,
            settles_at: None,
            operate_ms,
            release_ms,
            fault: None,
            emergency_open: false,
        }
    }

    pub fn commanded(&self) -> bool {
        self.commanded
    }

    /// The contacts' position, which is also what the auxiliary feedback reports.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn fault(&self) -> Option<ContactorFault> {
        self.fault
    }

    /// Whether feedback disagrees with the command after the contacts had time to move:
    /// what the PLC reports in its fault mask.
    pub fn disagrees(&self) -> bool {
        self.settles_at.is_none() && self.closed != self.commanded
    }

    /// Whether the open command in force was an emergency action.
    pub fn opened_in_emergency(&self) -> bool {
        self.emergency_open
    }

    /// Tells the contactor to close or open; `emergency` marks an open as an emergency
    /// action.
    pub fn command(&mut self, close: bool, emergency: bool, now_ms: u64) {
        if !close {
            // A repeated open command may escalate to an emergency, never the other way.
            self.emergency_open |= emergency;
        }
        if close == self.commanded {
            return;
        }
        if !close {
            self.emergency_open = emergency;
        }
        self.commanded = close;
        let delay = if close {
            self.operate_ms
        } else {
            self.release_ms
        };
        self.settles_at = Some(now_ms + delay);
    }

    /// Moves the contacts if their delay has passed. Returns whether they moved.
    pub fn step(&mut self, now_ms: u64) -> bool {
        match self.settles_at {
            Some(at) if now_ms >= at => self.settles_at = None,
            _ => return false,
        }
        let target = match self.fault {
            Some(ContactorFault::Welded) if self.closed => true,
            Some(ContactorFault::FailToClose) => false,
            _ => self.commanded,
        };
        let moved = target != self.closed;
        self.closed = target;
        moved
    }

    /// Injects or clears a failure. A weld on an open contactor takes hold when it next
    /// closes; clearing a weld does not open the contacts until the next command.
    pub fn set_fault(&mut self, fault: Option<ContactorFault>) {
        self.fault = fault;
        if fault == Some(ContactorFault::FailToClose) && self.closed {
            // A dead coil drops the contacts.
            self.closed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_its_command_after_the_delay() {
        let mut c = Contactor::new(30, 20);
        c.command(true, false, 100);
        assert!(!c.step(129) && !c.is_closed());
        assert!(!c.disagrees(), "moving is not a disagreement");
        assert!(c.step(130) && c.is_closed());
        c.command(false, false, 200);
        assert!(!c.step(219) && c.is_closed());
        assert!(c.step(220) && !c.is_closed());
    }

    #[test]
    fn a_welded_contactor_stays_closed_and_disagrees() {
        let mut c = Contactor::new(30, 30);
        c.set_fault(Some(ContactorFault::Welded));
        c.command(true, false, 0);
        c.step(30);
        c.command(false, false, 100);
        assert!(!c.step(200));
        assert!(c.is_closed());
        assert!(c.disagrees());
    }

    #[test]
    fn a_contactor_that_fails_to_close_stays_open() {
        let mut c = Contactor::new(30, 30);
        c.set_fault(Some(ContactorFault::FailToClose));
        c.command(true, false, 0);
        c.step(1_000);
        assert!(!c.is_closed());
        assert!(c.disagrees());
    }

    #[test]
    fn a_repeated_command_does_not_restart_the_delay() {
        let mut c = Contactor::new(30, 30);
        c.command(true, false, 0);
        c.command(true, false, 20);
        assert!(c.step(30));
    }
}
