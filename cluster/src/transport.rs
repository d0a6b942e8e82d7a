//! The Zenoh session every node opens (issue 7, "Transport and membership"): peer mode,
//! exactly the given TCP endpoints, no multicast scouting and no gossip (a hub's nodes find
//! each other through the hub config, never by accident across a site network), and the
//! same short link lease everywhere.

/// Zenoh link lease: a peer that is silent this long is dropped (keep-alives go at a
/// quarter of it). Short, so that a hung or killed node's liveliness token disappears in
/// about a second (DESIGN.md §6: survivors re-plan within 2 s).
pub const LINK_LEASE_MS: u64 = 1000;

/// A setting Zenoh refused (a bad endpoint from the hub config or a flag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("zenoh config {key} = {value}: {message}")]
pub struct ConfigError {
    /// The setting.
    pub key: &'static str,
    /// Its value.
    pub value: String,
    /// Zenoh's reason.
    pub message: String,
}

/// The config of a node's session (see the module docs), listening on `listen` and
/// connecting to `connect`.
pub fn peer_config(listen: &[String], connect: &[String]) -> Result<zenoh::Config, ConfigError> {
    let mut config = zenoh::Config::default();
    let list = |endpoints: &[String]| serde_json::Value::from(endpoints.to_vec()).to_string();
    let settings: [(&'static str, String); 6] = [
        ("mode", r#""peer""#.to_owned()),
        ("listen/endpoints", list(listen)),
        ("connect/endpoints", list(connect)),
        ("scouting/multicast/enabled", "false".to_owned()),
        // Nor by gossip: a gossiped peer is connected to from both sides, which the
        // one-opener-per-pair mesh avoids (see the hub config's `zenoh_connect`).
        ("scouting/gossip/enabled", "false".to_owned()),
        ("transport/link/tx/lease", LINK_LEASE_MS.to_string()),
    ];
    for (key, value) in settings {
        config.insert_json5(key, &value).map_err(|e| ConfigError {
            key,
            value: value.clone(),
            message: e.to_string(),
        })?;
    }
    Ok(config)
}
