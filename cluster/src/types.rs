//! The Raft type configuration: what the log carries and what applying it answers.

use std::io::Cursor;

use crate::record::{Outcome, Request};

/// A cabinet's Raft id: its position in the hub config's cabinet list, from 1.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// ringhub's Raft: requests to the hub record in the log; each Normal entry answers
    /// its [`Outcome`], Blank and Membership entries answer `None`.
    pub TypeConfig:
        D = Request,
        R = Option<Outcome>,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);
