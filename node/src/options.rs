//! The node's resolved settings: its cabinet's entry in the hub config, with the command
//! line's overrides applied and every value checked (issue 5, "The node").
//!
//! ```text
//!   ringhub-node --config deploy/hubs/demo.toml --node cab-a \
//!       [--data-dir DIR] [--metrics 127.0.0.1:PORT] [--zenoh-listen EP]... \
//!       [--zenoh-connect EP]... [--can URI] [--auth free|local|ocpp] [--csms URL]
//! ```
//!
//! `--csms URL` replaces every dispenser's `csms_url` and implies `--auth ocpp` (unless
//! `--auth` says otherwise). It keeps each dispenser's security settings
//! (`security_profile`, `csms_password_file`, `csms_ca_file`): the flag moves the CSMS,
//! not the credentials. The URL must fit them as the config's own would — `ws://` for
//! profile 1, `wss://` for profile 2 or with a CA file — and is checked here, at start.
//!
//! A dispenser's `csms_password_file` is read here too, so that a missing secret stops
//! the node at start instead of failing every reconnect. The AuthorizationKey (the Basic
//! auth password, OCPP 1.6 Security Whitepaper §2) is the whole file less one trailing
//! newline (`\n` or `\r\n`): non-empty printable ASCII, `:` included (RFC 7617 §2 forbids
//! it only in the user id, the identity, which the transport checks). The whitepaper has
//! the CSMS set keys of 16 to 40 bytes; other lengths are accepted, since the CSMS is the
//! judge of its keys. The key never appears in an error, a log or a `Debug` print
//! ([`SecurityProfile`]'s `Debug` redacts it).
//!
//! A flag replaces the config's value; a repeatable flag given at least once replaces the
//! whole list. Errors name what is wrong and where it came from (the flag, or the config
//! field `cabinets[<id>].<field>`), so a typo is found at start, not at the first reconnect.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ringhub_proto::config::{
    AuthMode, CabinetId, CsmsSecurity, DispenserId, GunId, HubConfig, HubId, Segment,
    TransactionStart,
};

use crate::can::{BusUri, UriError};
use crate::ocpp::transport::SecurityProfile;
use crate::store::Store;

/// Values from the command line that replace the config's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--metrics HOST:PORT`.
    pub metrics: Option<SocketAddr>,
    /// `--zenoh-listen`, repeatable; `None` when not given.
    pub zenoh_listen: Option<Vec<String>>,
    /// `--zenoh-connect`, repeatable; `None` when not given.
    pub zenoh_connect: Option<Vec<String>>,
    /// `--can URI`, unparsed (parsed in [`NodeOptions::resolve`] so the error names the flag).
    pub can: Option<String>,
    /// `--auth`.
    pub auth: Option<AuthMode>,
    /// `--csms URL`: the CSMS of every dispenser.
    pub csms: Option<String>,
}

/// A dispenser with a gun on this node: one OCPP charge point the node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcppDispenser {
    /// Its id in the config, for logs.
    pub id: DispenserId,
    /// Its charge point identity, the last path segment of its WebSocket URL.
    pub identity: String,
    /// The CSMS endpoint without the identity; `None`: the dispenser stays offline.
    pub csms_url: Option<String>,
    /// Its OCPP security profile, with the password read from its `csms_password_file`
    /// (the `Debug` of [`SecurityProfile`] redacts it).
    pub security: SecurityProfile,
    /// The CAs trusted for `wss://` in place of the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// NumberOfConnectors: the highest connector id of its guns, on any cabinet.
    pub connectors: u32,
    /// This node's guns on it, with their OCPP connector ids.
    pub guns: Vec<(GunId, u32)>,
    /// When its transactions start.
    pub transaction_start: TransactionStart,
}

/// Everything the node runtime needs to know about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeOptions {
    /// The hub, for Zenoh keys and metric labels.
    pub hub: HubId,
    /// This node's id, which is its cabinet's id.
    pub node: CabinetId,
    /// Where the store and (later) the Raft log live.
    pub data_dir: PathBuf,
    /// The Prometheus scrape address.
    pub metrics: SocketAddr,
    /// Zenoh endpoints to listen on.
    pub zenoh_listen: Vec<String>,
    /// Zenoh endpoints to connect to.
    pub zenoh_connect: Vec<String>,
    /// The cabinet's CAN bus.
    pub can: BusUri,
    /// Who may charge.
    pub auth: AuthMode,
    /// The accepted id tags with [`AuthMode::Local`].
    pub local_auth_list: Vec<String>,
    /// The cabinet's segments, in ring order, as the config describes them.
    pub segments: Vec<Segment>,
    /// The dispensers with a gun on this cabinet, in config order.
    pub dispensers: Vec<OcppDispenser>,
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag, e.g. `--can`.
    Flag(&'static str),
    /// A field of the node's cabinet in the hub config.
    Config {
        cabinet: String,
        field: &'static str,
    },
    /// A field of a dispenser in the hub config.
    Dispenser {
        dispenser: String,
        field: &'static str,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(flag) => write!(f, "flag {flag}"),
            Self::Config { cabinet, field } => {
                write!(f, "hub config cabinets[{cabinet}].{field}")
            }
            Self::Dispenser { dispenser, field } => {
                write!(f, "hub config dispensers[{dispenser}].{field}")
            }
        }
    }
}

/// Why the options cannot be resolved: the operator's input is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    /// `--node` names no cabinet of the config.
    #[error("node {node:?} is not a cabinet of hub {hub}; its cabinets are: {}", known.join(", "))]
    UnknownNode {
        node: String,
        hub: String,
        known: Vec<String>,
    },
    /// The CAN bus URI does not parse.
    #[error("{source_of}: {error}")]
    Can { source_of: Source, error: UriError },
    /// A Zenoh endpoint does not parse, or is not TCP (the only transport this build has).
    #[error("{source_of}: Zenoh endpoint {endpoint:?}: {reason}")]
    Endpoint {
        source_of: Source,
        endpoint: String,
        reason: String,
    },
    /// The node would listen nowhere, so no peer could reach it.
    #[error("{0}: the node needs at least one Zenoh listen endpoint")]
    NoListen(Source),
    /// `--auth` has an unknown value.
    #[error("flag --auth: {0:?} is not one of free, local, ocpp")]
    Auth(String),
    /// The CSMS URL does not fit the dispenser's security settings (e.g. `--csms ws://`
    /// with profile 2).
    #[error("{source_of}: CSMS URL {url:?} for dispenser {dispenser}: {reason}")]
    CsmsUrl {
        source_of: Source,
        dispenser: String,
        url: String,
        reason: String,
    },
    /// A dispenser's password file cannot be read or holds no usable AuthorizationKey.
    /// The message never quotes the file's content.
    #[error("{source_of}: {}: {reason}", path.display())]
    PasswordFile {
        source_of: Source,
        path: PathBuf,
        reason: String,
    },
}

/// Parses `--auth free|local|ocpp` (for clap's `value_parser`).
pub fn parse_auth(value: &str) -> Result<AuthMode, OptionsError> {
    match value {
        "free" => Ok(AuthMode::Free),
        "local" => Ok(AuthMode::Local),
        "ocpp" => Ok(AuthMode::Ocpp),
        other => Err(OptionsError::Auth(other.to_owned())),
    }
}

impl NodeOptions {
    /// The settings of node `node` of `config`, with `overrides` applied.
    pub fn resolve(
        config: &HubConfig,
        node: &str,
        overrides: Overrides,
    ) -> Result<NodeOptions, OptionsError> {
        let cabinet = config
            .cabinets
            .iter()
            .find(|c| c.id == node)
            .ok_or_else(|| OptionsError::UnknownNode {
                node: node.to_owned(),
                hub: config.hub.id.to_string(),
                known: config.cabinets.iter().map(|c| c.id.to_string()).collect(),
            })?;
        let field = |field: &'static str| Source::Config {
            cabinet: cabinet.id.to_string(),
            field,
        };

        let (can_uri, can_source) = match overrides.can {
            Some(uri) => (uri, Source::Flag("--can")),
            None => (cabinet.can.clone(), field("can")),
        };
        let can = BusUri::from_str(&can_uri).map_err(|error| OptionsError::Can {
            source_of: can_source,
            error,
        })?;

        let (zenoh_listen, listen_source) = match overrides.zenoh_listen {
            Some(list) => (list, Source::Flag("--zenoh-listen")),
            None => (cabinet.zenoh_listen.clone(), field("zenoh_listen")),
        };
        if zenoh_listen.is_empty() {
            return Err(OptionsError::NoListen(listen_source));
        }
        check_endpoints(&zenoh_listen, &listen_source)?;
        let (zenoh_connect, connect_source) = match overrides.zenoh_connect {
            Some(list) => (list, Source::Flag("--zenoh-connect")),
            None => (cabinet.zenoh_connect.clone(), field("zenoh_connect")),
        };
        check_endpoints(&zenoh_connect, &connect_source)?;

        let segments: Vec<Segment> = config.segments_of(&cabinet.id).cloned().collect();
        let mut dispensers = Vec::new();
        for dispenser in &config.dispensers {
            let guns: Vec<(GunId, u32)> = segments
                .iter()
                .filter_map(|s| s.gun.as_ref())
                .filter(|g| g.dispenser == dispenser.id)
                .map(|g| (g.id, g.connector.0))
                .collect();
            if guns.is_empty() {
                continue;
            }
            let connectors = config
                .segments
                .iter()
                .filter_map(|s| s.gun.as_ref())
                .filter(|g| g.dispenser == dispenser.id)
                .map(|g| g.connector.0)
                .max()
                .unwrap_or(0);
            let dispenser_field = |field: &'static str| Source::Dispenser {
                dispenser: dispenser.id.to_string(),
                field,
            };
            let (csms_url, url_source) = match &overrides.csms {
                Some(url) => (Some(url.clone()), Source::Flag("--csms")),
                None => (dispenser.csms_url.clone(), dispenser_field("csms_url")),
            };
            if let Some(url) = &csms_url {
                let ca_file = dispenser.csms_ca_file.is_some();
                check_scheme(url, &dispenser.security, ca_file).map_err(|reason| {
                    OptionsError::CsmsUrl {
                        source_of: url_source,
                        dispenser: dispenser.id.to_string(),
                        url: url.clone(),
                        reason,
                    }
                })?;
            }
            let password = |path: &Path| {
                read_authorization_key(path).map_err(|reason| OptionsError::PasswordFile {
                    source_of: dispenser_field("csms_password_file"),
                    path: path.to_owned(),
                    reason,
                })
            };
            let security = match &dispenser.security {
                CsmsSecurity::Unsecured => SecurityProfile::Unsecured,
                CsmsSecurity::BasicAuth { password_file } => SecurityProfile::BasicAuth {
                    password: password(password_file)?,
                },
                CsmsSecurity::TlsBasicAuth { password_file } => SecurityProfile::TlsBasicAuth {
                    password: password(password_file)?,
                },
            };
            dispensers.push(OcppDispenser {
                id: dispenser.id.clone(),
                identity: dispenser.ocpp_identity.clone(),
                csms_url,
                security,
                ca_file: dispenser.csms_ca_file.clone(),
                connectors,
                guns,
                transaction_start: dispenser.transaction_start,
            });
        }
        let auth = match (overrides.auth, &overrides.csms) {
            (Some(auth), _) => auth,
            (None, Some(_)) => AuthMode::Ocpp,
            (None, None) => cabinet.auth,
        };

        Ok(NodeOptions {
            hub: config.hub.id.clone(),
            node: cabinet.id.clone(),
            data_dir: overrides
                .data_dir
                .unwrap_or_else(|| cabinet.data_dir.clone()),
            metrics: overrides.metrics.unwrap_or(cabinet.metrics),
            zenoh_listen,
            zenoh_connect,
            can,
            auth,
            local_auth_list: cabinet.local_auth_list.clone(),
            segments,
            dispensers,
        })
    }

    /// The store file in the data dir.
    pub fn store_path(&self) -> PathBuf {
        Store::path_in(&self.data_dir)
    }
}

/// Checks that a CSMS URL fits the dispenser's security settings, as the config checks
/// its own `csms_url` (this catches `--csms`): profile 1 over `ws://`; profile 2, and any
/// CA file, over `wss://`.
fn check_scheme(url: &str, security: &CsmsSecurity, ca_file: bool) -> Result<(), String> {
    let tls = url.starts_with("wss://");
    match security {
        CsmsSecurity::BasicAuth { .. } if !url.starts_with("ws://") => Err(
            "its security_profile = 1 is Basic auth over plain ws://; wss:// is profile 2".into(),
        ),
        CsmsSecurity::TlsBasicAuth { .. } if !tls => Err(
            "its security_profile = 2 sends the password over TLS only: the URL must be wss://"
                .into(),
        ),
        _ if ca_file && !tls => Err("its csms_ca_file is used only over wss://".into()),
        _ => Ok(()),
    }
}

/// Reads an AuthorizationKey file (see the module docs): the whole file less one trailing
/// newline, non-empty printable ASCII. The error says what is wrong without quoting the
/// content.
fn read_authorization_key(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let key = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(&bytes);
    if key.is_empty() {
        return Err(
            "is empty: it must hold the AuthorizationKey (the Basic auth password)".to_owned(),
        );
    }
    if let Some(at) = key.iter().position(|b| !(b' '..=b'~').contains(b)) {
        return Err(format!(
            "byte {at} of the AuthorizationKey is not printable ASCII (the key is the whole \
             file less one trailing newline)"
        ));
    }
    // Printable ASCII is UTF-8.
    String::from_utf8(key.to_vec()).map_err(|e| e.to_string())
}

/// Checks that each endpoint parses as a Zenoh endpoint and is TCP.
fn check_endpoints(endpoints: &[String], source: &Source) -> Result<(), OptionsError> {
    for endpoint in endpoints {
        let error = |reason: String| OptionsError::Endpoint {
            source_of: source.clone(),
            endpoint: endpoint.clone(),
            reason,
        };
        let parsed =
            zenoh::config::EndPoint::from_str(endpoint).map_err(|e| error(e.to_string()))?;
        let protocol = parsed.protocol();
        if protocol.as_str() != "tcp" {
            return Err(error(format!(
                "protocol {:?} is not available: this build carries only tcp",
                protocol.as_str()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringhub_proto::config::SegmentId;

    fn demo() -> HubConfig {
        HubConfig::demo()
    }

    #[test]
    fn config_values_without_overrides() {
        let config = demo();
        let options =
            NodeOptions::resolve(&config, "cab-b", Overrides::default()).expect("resolve");
        let cabinet = config
            .cabinets
            .iter()
            .find(|c| c.id == "cab-b")
            .expect("cab-b");
        assert_eq!(options.hub, config.hub.id);
        assert_eq!(options.node, cabinet.id);
        assert_eq!(options.data_dir, cabinet.data_dir);
        assert_eq!(options.metrics, cabinet.metrics);
        assert_eq!(options.zenoh_listen, cabinet.zenoh_listen);
        assert_eq!(options.zenoh_connect, cabinet.zenoh_connect);
        assert_eq!(options.can.to_string(), cabinet.can);
        assert_eq!(options.auth, cabinet.auth);
        assert_eq!(options.local_auth_list, cabinet.local_auth_list);
        let ids: Vec<SegmentId> = options.segments.iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![SegmentId(2), SegmentId(3)], "cab-b's segments");
        assert_eq!(options.store_path(), cabinet.data_dir.join("node.redb"));
    }

    #[test]
    fn flags_replace_config_values() {
        let overrides = Overrides {
            data_dir: Some("/var/lib/ringhub/test".into()),
            metrics: Some("127.0.0.1:19101".parse().expect("addr")),
            zenoh_listen: Some(vec!["tcp/127.0.0.1:17447".into()]),
            zenoh_connect: Some(vec![]),
            can: Some("socketcand:127.0.0.1:40000/cab-a".into()),
            auth: Some(AuthMode::Ocpp),
            csms: None,
        };
        let options = NodeOptions::resolve(&demo(), "cab-a", overrides).expect("resolve");
        assert_eq!(options.data_dir, PathBuf::from("/var/lib/ringhub/test"));
        assert_eq!(options.metrics.port(), 19101);
        assert_eq!(options.zenoh_listen, vec!["tcp/127.0.0.1:17447".to_owned()]);
        assert!(
            options.zenoh_connect.is_empty(),
            "an empty list replaces too"
        );
        assert_eq!(
            options.can,
            BusUri::from_str("socketcand:127.0.0.1:40000/cab-a").expect("uri")
        );
        assert_eq!(options.auth, AuthMode::Ocpp);
        assert_eq!(options.node, "cab-a");
    }

    #[test]
    fn dispensers_of_the_cabinet_and_the_csms_flag() {
        let options =
            NodeOptions::resolve(&demo(), "cab-a", Overrides::default()).expect("resolve");
        assert_eq!(
            options.dispensers,
            vec![OcppDispenser {
                id: "disp-a".parse().expect("id"),
                identity: "RH-DEMO-A".into(),
                csms_url: None,
                security: SecurityProfile::Unsecured,
                ca_file: None,
                connectors: 2,
                guns: vec![(GunId(0), 1), (GunId(1), 2)],
                transaction_start: TransactionStart::Energy,
            }],
            "cab-a hosts both guns of disp-a and nothing else"
        );
        assert_eq!(
            options.auth,
            AuthMode::Free,
            "the demo's cab-a is free vend"
        );

        let overrides = Overrides {
            csms: Some("ws://127.0.0.1:9000/ocpp".into()),
            ..Overrides::default()
        };
        let options = NodeOptions::resolve(&demo(), "cab-b", overrides).expect("resolve");
        assert_eq!(options.auth, AuthMode::Ocpp, "--csms implies --auth ocpp");
        let urls: Vec<_> = options
            .dispensers
            .iter()
            .map(|d| (d.identity.as_str(), d.csms_url.as_deref()))
            .collect();
        assert_eq!(urls, vec![("RH-DEMO-B", Some("ws://127.0.0.1:9000/ocpp"))]);

        let overrides = Overrides {
            csms: Some("ws://127.0.0.1:9000/ocpp".into()),
            auth: Some(AuthMode::Local),
            ..Overrides::default()
        };
        let options = NodeOptions::resolve(&demo(), "cab-b", overrides).expect("resolve");
        assert_eq!(options.auth, AuthMode::Local, "an explicit --auth wins");
    }

    #[test]
    fn an_unknown_node_lists_the_known_ones() {
        let err =
            NodeOptions::resolve(&demo(), "cab-z", Overrides::default()).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            r#"node "cab-z" is not a cabinet of hub demo; its cabinets are: cab-a, cab-b, cab-c"#
        );
    }

    #[test]
    fn a_bad_can_uri_names_the_flag_or_the_field() {
        let overrides = Overrides {
            can: Some("sockcan:can0".into()),
            ..Overrides::default()
        };
        let err = NodeOptions::resolve(&demo(), "cab-a", overrides).expect_err("bad flag");
        let message = err.to_string();
        assert!(message.starts_with("flag --can: "), "{message}");
        assert!(message.contains("sockcan"), "{message}");

        let mut config = demo();
        config.cabinets[1].can = "socketcand:127.0.0.1/cab-b".into();
        let err =
            NodeOptions::resolve(&config, "cab-b", Overrides::default()).expect_err("bad field");
        let message = err.to_string();
        assert!(
            message.starts_with("hub config cabinets[cab-b].can: "),
            "{message}"
        );
        assert!(matches!(
            err,
            OptionsError::Can {
                error: UriError::MissingPort(_),
                ..
            }
        ));
    }

    #[test]
    fn bad_zenoh_endpoints_are_refused() {
        let overrides = Overrides {
            zenoh_connect: Some(vec!["tcp/127.0.0.1:7448".into(), "nonsense".into()]),
            ..Overrides::default()
        };
        let err = NodeOptions::resolve(&demo(), "cab-a", overrides).expect_err("bad endpoint");
        let message = err.to_string();
        assert!(message.starts_with("flag --zenoh-connect: "), "{message}");
        assert!(message.contains("\"nonsense\""), "{message}");

        let overrides = Overrides {
            zenoh_listen: Some(vec!["udp/127.0.0.1:7447".into()]),
            ..Overrides::default()
        };
        let err = NodeOptions::resolve(&demo(), "cab-a", overrides).expect_err("udp");
        assert!(err.to_string().contains("only tcp"), "{err}");

        let mut config = demo();
        config.cabinets[0].zenoh_listen.clear();
        let err = NodeOptions::resolve(&config, "cab-a", Overrides::default()).expect_err("none");
        assert_eq!(
            err.to_string(),
            "hub config cabinets[cab-a].zenoh_listen: the node needs at least one Zenoh listen endpoint"
        );
    }

    /// A fresh directory for one test's files, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("ringhub-options-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("create the scratch dir");
            Self(dir)
        }

        /// Writes `content` to `name` and returns its path.
        fn file(&self, name: &str, content: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, content).expect("write a scratch file");
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The demo hub with disp-a (on cab-a) on profile 2 toward `wss://csms/ocpp`, its
    /// password in `password_file`, trusting `ca.pem`.
    fn demo_with_profile_2(password_file: PathBuf) -> HubConfig {
        let mut config = demo();
        let disp_a = &mut config.dispensers[0];
        assert_eq!(disp_a.id.as_str(), "disp-a");
        disp_a.csms_url = Some("wss://csms/ocpp".into());
        disp_a.security = CsmsSecurity::TlsBasicAuth { password_file };
        disp_a.csms_ca_file = Some("/etc/ringhub/ca.pem".into());
        config
    }

    /// The options of cab-a, or their error as text.
    fn resolve_cab_a(config: &HubConfig, overrides: Overrides) -> Result<OcppDispenser, String> {
        NodeOptions::resolve(config, "cab-a", overrides)
            .map(|mut o| o.dispensers.remove(0))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn security_comes_from_the_config_and_the_password_file() {
        let scratch = Scratch::new("security");
        // The key may hold ':' and spaces; one trailing newline is not part of it.
        let key = scratch.file("disp-a.key", "s3cret: with colon\n");
        let dispenser =
            resolve_cab_a(&demo_with_profile_2(key), Overrides::default()).expect("resolve");
        assert_eq!(
            dispenser.security,
            SecurityProfile::TlsBasicAuth {
                password: "s3cret: with colon".into()
            }
        );
        assert_eq!(dispenser.ca_file, Some("/etc/ringhub/ca.pem".into()));
        assert_eq!(dispenser.csms_url.as_deref(), Some("wss://csms/ocpp"));
        let printed = format!("{dispenser:?}");
        assert!(
            !printed.contains("s3cret"),
            "Debug leaks the key: {printed}"
        );

        // A CRLF ending is one newline too; profile 1 maps to BasicAuth.
        let key = scratch.file("crlf.key", "pw\r\n");
        let mut config = demo();
        config.dispensers[0].security = CsmsSecurity::BasicAuth { password_file: key };
        let dispenser = resolve_cab_a(&config, Overrides::default()).expect("resolve");
        assert_eq!(
            dispenser.security,
            SecurityProfile::BasicAuth {
                password: "pw".into()
            }
        );
    }

    #[test]
    fn the_csms_flag_keeps_the_security_settings() {
        let scratch = Scratch::new("flag");
        let key = scratch.file("disp-a.key", "s3cret");
        let overrides = |url: &str| Overrides {
            csms: Some(url.into()),
            ..Overrides::default()
        };
        let config = demo_with_profile_2(key);
        let dispenser =
            resolve_cab_a(&config, overrides("wss://other:9443/ocpp")).expect("resolve");
        assert_eq!(dispenser.csms_url.as_deref(), Some("wss://other:9443/ocpp"));
        assert_eq!(
            dispenser.security,
            SecurityProfile::TlsBasicAuth {
                password: "s3cret".into()
            }
        );
        assert_eq!(dispenser.ca_file, Some("/etc/ringhub/ca.pem".into()));

        assert_eq!(
            resolve_cab_a(&config, overrides("ws://other:9000/ocpp")).unwrap_err(),
            "flag --csms: CSMS URL \"ws://other:9000/ocpp\" for dispenser disp-a: its \
             security_profile = 2 sends the password over TLS only: the URL must be wss://"
        );
        let mut profile_0 = demo();
        profile_0.dispensers[0].csms_ca_file = Some("ca.pem".into());
        assert_eq!(
            resolve_cab_a(&profile_0, overrides("ws://other:9000/ocpp")).unwrap_err(),
            "flag --csms: CSMS URL \"ws://other:9000/ocpp\" for dispenser disp-a: its \
             csms_ca_file is used only over wss://"
        );
        let mut profile_1 = demo();
        profile_1.dispensers[0].security = CsmsSecurity::BasicAuth {
            password_file: scratch.0.join("disp-a.key"),
        };
        assert_eq!(
            resolve_cab_a(&profile_1, overrides("wss://other:9443/ocpp")).unwrap_err(),
            "flag --csms: CSMS URL \"wss://other:9443/ocpp\" for dispenser disp-a: its \
             security_profile = 1 is Basic auth over plain ws://; wss:// is profile 2"
        );
    }

    #[test]
    fn an_unusable_password_file_is_named() {
        let scratch = Scratch::new("unusable");
        let missing = scratch.0.join("missing.key");
        let error =
            resolve_cab_a(&demo_with_profile_2(missing.clone()), Overrides::default()).unwrap_err();
        let prefix = format!(
            "hub config dispensers[disp-a].csms_password_file: {}: cannot read it: ",
            missing.display()
        );
        assert!(error.starts_with(&prefix), "{error}");

        for (name, content) in [("empty.key", ""), ("newline.key", "\n")] {
            let path = scratch.file(name, content);
            assert_eq!(
                resolve_cab_a(&demo_with_profile_2(path.clone()), Overrides::default())
                    .unwrap_err(),
                format!(
                    "hub config dispensers[disp-a].csms_password_file: {}: is empty: it must \
                     hold the AuthorizationKey (the Basic auth password)",
                    path.display()
                )
            );
        }

        // Only one newline is trimmed; what is left must be printable, and is not quoted.
        let path = scratch.file("two-lines.key", "s3cret\n\n");
        let error =
            resolve_cab_a(&demo_with_profile_2(path.clone()), Overrides::default()).unwrap_err();
        assert_eq!(
            error,
            format!(
                "hub config dispensers[disp-a].csms_password_file: {}: byte 6 of the \
                 AuthorizationKey is not printable ASCII (the key is the whole file less one \
                 trailing newline)",
                path.display()
            )
        );
        assert!(!error.contains("s3cret"));
    }

    #[test]
    fn auth_flag_values() {
        assert_eq!(parse_auth("free"), Ok(AuthMode::Free));
        assert_eq!(parse_auth("local"), Ok(AuthMode::Local));
        assert_eq!(parse_auth("ocpp"), Ok(AuthMode::Ocpp));
        assert_eq!(
            parse_auth("Free").map_err(|e| e.to_string()),
            Err(r#"flag --auth: "Free" is not one of free, local, ocpp"#.to_owned())
        );
    }
}
