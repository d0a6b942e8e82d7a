//! The virtual hub: ring physics, contactors, power modules, PLC firmware and EVs,
//! served over socketcand (DESIGN.md §3). Built by the simulator issue.
