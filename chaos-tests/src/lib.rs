//! Multi-process fault-injection scenarios for the whole hub (DESIGN.md §3, §7).
//! Built by the fault-latch and chaos issue.
