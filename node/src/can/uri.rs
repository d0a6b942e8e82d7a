//! Where a cabinet's CAN bus is, as one string in the hub config (DESIGN.md §5, "CAN
//! transports"):
//!
//! | URI | bus |
//! | --- | --- |
//! | `socketcan:can0` | a Linux SocketCAN interface (hardware) |
//! | `socketcand:HOST:PORT/BUS` | bus `BUS` of a socketcand server (the simulator, or a remote interface); an IPv6 host goes in brackets, `[::1]:29536/can0` |
//! | `candump:FILE` | a replay of a `candump -l` log |
//!
//! Parsing checks everything that can be checked without IO, so a typo fails at config
//! load with a message naming the faulty part, not at the first reconnect.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ringhub_proto::socketcand::{BusName, TextError};

/// Longest Linux network interface name (`IFNAMSIZ` minus the terminating NUL).
const MAX_INTERFACE_LEN: usize = 15;

/// A parsed bus URI. `Display` writes it back as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusUri {
    /// `socketcan:IFACE`: a Linux SocketCAN interface.
    SocketCan {
        /// Interface name, e.g. `can0`.
        interface: String,
    },
    /// `socketcand:HOST:PORT/BUS`: a bus served by socketcand.
    Socketcand(SocketcandAddr),
    /// `candump:FILE`: replay of a `candump -l` log file.
    Candump {
        /// The log file.
        path: PathBuf,
    },
}

/// Where a socketcand bus is: server and bus name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketcandAddr {
    /// Host name or IP address, without IPv6 brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The bus to open on that server.
    pub bus: BusName,
}

impl SocketcandAddr {
    /// `HOST:PORT`, bracketing an IPv6 host, as `TcpStream::connect` and log lines want it.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for SocketcandAddr {
    /// `HOST:PORT/BUS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server(), self.bus)
    }
}

/// Why a string is not a bus URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error(
        "bus URI {0:?} has no scheme; expected socketcan:IFACE, socketcand:HOST:PORT/BUS or candump:FILE"
    )]
    MissingScheme(String),
    #[error(
        "bus URI {uri:?} has unknown scheme {scheme:?}; expected socketcan, socketcand or candump"
    )]
    UnknownScheme { uri: String, scheme: String },
    #[error("bus URI {uri:?}: interface name {reason}")]
    BadInterface { uri: String, reason: &'static str },
    #[error("bus URI {0:?} has no /BUS after HOST:PORT")]
    MissingBus(String),
    #[error("bus URI {0:?} has no :PORT after the host")]
    MissingPort(String),
    #[error("bus URI {uri:?}: port {port:?} is not a number from 1 to 65535")]
    BadPort { uri: String, port: String },
    #[error("bus URI {uri:?}: host {host:?} is empty or badly bracketed")]
    BadHost { uri: String, host: String },
    #[error("bus URI {uri:?}: bus name {name:?} {reason}")]
    BadBusName {
        uri: String,
        name: String,
        reason: TextError,
    },
    #[error("bus URI {0:?} has an empty file name")]
    EmptyPath(String),
}

impl FromStr for BusUri {
    type Err = UriError;

    fn from_str(uri: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = uri
            .split_once(':')
            .ok_or_else(|| UriError::MissingScheme(uri.to_owned()))?;
        match scheme {
            "socketcan" => {
                parse_interface(uri, rest).map(|interface| Self::SocketCan { interface })
            }
            "socketcand" => parse_socketcand(uri, rest).map(Self::Socketcand),
            "candump" if rest.is_empty() => Err(UriError::EmptyPath(uri.to_owned())),
            "candump" => Ok(Self::Candump {
                path: PathBuf::from(rest),
            }),
            _ => Err(UriError::UnknownScheme {
                uri: uri.to_owned(),
                scheme: scheme.to_owned(),
            }),
        }
    }
}

impl fmt::Display for BusUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SocketCan { interface } => write!(f, "socketcan:{interface}"),
            Self::Socketcand(addr) => write!(f, "socketcand:{addr}"),
            Self::Candump { path } => write!(f, "candump:{}", path.display()),
        }
    }
}

/// A Linux interface name, by the kernel's rules (`dev_valid_name`).
fn parse_interface(uri: &str, name: &str) -> Result<String, UriError> {
    let bad = |reason| UriError::BadInterface {
        uri: uri.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("is empty"));
    }
    if name.len() > MAX_INTERFACE_LEN {
        return Err(bad("is longer than 15 bytes"));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        return Err(bad("contains '/', ':' or whitespace, or is '.' or '..'"));
    }
    Ok(name.to_owned())
}

/// `HOST:PORT/BUS`, the host possibly a bracketed IPv6 address.
fn parse_socketcand(uri: &str, rest: &str) -> Result<SocketcandAddr, UriError> {
    let (server, bus) = rest
        .rsplit_once('/')
        .ok_or_else(|| UriError::MissingBus(uri.to_owned()))?;
    let (host, port) = server
        .rsplit_once(':')
        .ok_or_else(|| UriError::MissingPort(uri.to_owned()))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|&port| port != 0)
        .ok_or_else(|| UriError::BadPort {
            uri: uri.to_owned(),
            port: port.to_owned(),
        })?;
    let bad_host = || UriError::BadHost {
        uri: uri.to_owned(),
        host: host.to_owned(),
    };
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed
            .strip_suffix(']')
            .filter(|ip| ip.contains(':'))
            .ok_or_else(bad_host)?,
        None if host.contains([':', '[', ']']) => return Err(bad_host()),
        None => host,
    };
    if host.is_empty() || host.contains(['/', '[', ']']) || host.contains(char::is_whitespace) {
        return Err(bad_host());
    }
    let bus = BusName::new(bus).map_err(|reason| UriError::BadBusName {
        uri: uri.to_owned(),
        name: bus.to_owned(),
        reason,
    })?;
    Ok(SocketcandAddr {
        host: host.to_owned(),
        port,
        bus,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_parses_and_round_trips() {
        for text in [
            "socketcan:can0",
            "socketcand:127.0.0.1:29536/cab-a",
            "socketcand:sim.local:29536/can0",
            "socketcand:[::1]:29536/can0",
            "candump:/var/log/ringhub/cab-a.log",
            "candump:relative name.log",
        ] {
            let uri: BusUri = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(uri.to_string(), text);
        }
    }

    #[test]
    fn socketcand_parts_are_split_out() {
        let BusUri::Socketcand(addr) = "socketcand:[::1]:29536/cab-a".parse().unwrap() else {
            panic!("not a socketcand URI");
        };
        assert_eq!(addr.host, "::1");
        assert_eq!(addr.port, 29536);
        assert_eq!(addr.bus.as_str(), "cab-a");
        assert_eq!(addr.server(), "[::1]:29536");
    }

    #[test]
    fn errors_name_the_faulty_part() {
        let err = |text: &str| text.parse::<BusUri>().unwrap_err();
        assert_eq!(err("can0"), UriError::MissingScheme("can0".into()));
        assert!(
            matches!(err("slcan:ttyUSB0"), UriError::UnknownScheme { scheme, .. } if scheme == "slcan")
        );
        assert!(matches!(
            err("socketcan:"),
            UriError::BadInterface {
                reason: "is empty",
                ..
            }
        ));
        assert!(matches!(
            err("socketcan:averyveryverylongname"),
            UriError::BadInterface { .. }
        ));
        assert!(matches!(
            err("socketcan:can/0"),
            UriError::BadInterface { .. }
        ));
        assert_eq!(
            err("socketcand:host:29536"),
            UriError::MissingBus("socketcand:host:29536".into())
        );
        assert_eq!(
            err("socketcand:host/can0"),
            UriError::MissingPort("socketcand:host/can0".into())
        );
        assert!(
            matches!(err("socketcand:host:0/can0"), UriError::BadPort { port, .. } if port == "0")
        );
        assert!(
            matches!(err("socketcand:host:http/can0"), UriError::BadPort { port, .. } if port == "http")
        );
        assert!(matches!(
            err("socketcand::29536/can0"),
            UriError::BadHost { .. }
        ));
        assert!(matches!(
            err("socketcand:::1:29536/can0"),
            UriError::BadHost { .. }
        ));
        assert!(matches!(
            err("socketcand:[127.0.0.1]:29536/can0"),
            UriError::BadHost { .. }
        ));
        assert!(matches!(
            err("socketcand:host:29536/"),
            UriError::BadBusName {
                reason: TextError::Empty,
                ..
            }
        ));
        assert!(matches!(
            err("socketcand:host:29536/a>b"),
            UriError::BadBusName { .. }
        ));
        assert_eq!(err("candump:"), UriError::EmptyPath("candump:".into()));
        let message = err("socketcand:host:99999/can0").to_string();
        assert!(
            message.contains("\"99999\"") && message.contains("1 to 65535"),
            "{message}"
        );
    }
}
