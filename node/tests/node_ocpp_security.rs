//! A real `ringhub-node` on OCPP 1.6 security profile 2 (OCPP 1.6 Security Whitepaper,
//! edition 3, §2: HTTP Basic auth over TLS), configured the way an operator would: the
//! hub config names the profile, a password file and a private CA; csms.py serves wss://
//! with a certificate of that CA and requires the password.
//!
//! ```text
//!  csms.py --tls --password ◄── wss://…/RH-DEMO-A ── ringhub-node cab-a ◄─ socketcand ─ Sim
//!          (server.pem)          Basic RH-DEMO-A:<file>     trusts ca.pem
//! ```
//!
//! The right password boots schema-valid; a wrong one is answered 401, which csms.py
//! logs as `unauthorized`. Neither password ever reaches the node's log.

mod common;

use common::csms::{Csms, demo_with_csms};
use common::{CARD, Rig, STEP, TempDir, bounded, eventually};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use ringhub_proto::config::{CsmsSecurity, HubConfig};

/// The password csms.py requires; with a ':' and a space, which Basic auth allows in a
/// password (RFC 7617 §2).
const PASSWORD: &str = "rh-demo-a: 0123456789abcdef";

/// A test CA, a certificate for 127.0.0.1 signed by it, and the node's password file, in
/// a fresh directory.
struct Secrets {
    /// Holds ca.pem, server.pem, server.key and disp-a.key.
    dir: TempDir,
}

impl Secrets {
    /// Makes the PKI (as `tests/ocpp_transport.rs` does) and writes `password`, with a
    /// trailing newline as an editor leaves it, to disp-a.key.
    fn new(name: &str, password: &str) -> Self {
        let dir = TempDir::new(name);
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ringhub test CA");
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let server_key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        let write = |name: &str, content: String| {
            std::fs::write(dir.path().join(name), content).expect("write a secret file");
        };
        write("ca.pem", ca.pem());
        write("server.pem", server.pem());
        write("server.key", server_key.serialize_pem());
        write("disp-a.key", format!("{password}\n"));
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// csms.py serving wss:// with server.pem and requiring `password`.
    fn csms(&self, password: &str) -> Csms {
        let (cert, key) = (self.path("server.pem"), self.path("server.key"));
        Csms::start_with(&[CARD], &["--password", password, "--tls", &cert, &key])
    }

    /// The demo hub with cab-a on OCPP and disp-a on profile 2 toward `csms`, trusting
    /// ca.pem, its password in disp-a.key: the TOML text and the parsed config.
    ///
    /// The password file is given relative to the config file's directory, as an operator
    /// keeping secrets next to the config would: the config lands in another temp dir
    /// (the [`Rig`]'s), a sibling of this one, and the node runs from the crate directory,
    /// so the path only works if the node resolves it from the config's directory.
    fn hub(&self, csms: &Csms) -> (String, HubConfig) {
        let url = format!("wss://127.0.0.1:{}/ocpp", csms.port());
        let (text, _) = demo_with_csms(&url);
        let url_line = format!("csms_url = {url:?}\n");
        let sibling = self
            .dir
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 temp dir name");
        let password_file = format!("../{sibling}/disp-a.key");
        let text = text.replacen(
            &url_line,
            &format!(
                "{url_line}security_profile = 2\ncsms_password_file = {password_file:?}\n\
                 csms_ca_file = {:?}\n",
                self.path("ca.pem")
            ),
            1,
        );
        let config = HubConfig::parse(&text, "demo-security.toml").expect("the edited demo");
        let disp_a = &config.dispensers[0];
        assert_eq!(
            (disp_a.ocpp_identity.as_str(), disp_a.security.profile()),
            ("RH-DEMO-A", 2),
            "the settings landed on disp-a"
        );
        assert_eq!(
            disp_a.security,
            CsmsSecurity::TlsBasicAuth {
                password_file: password_file.into()
            }
        );
        (text, config)
    }
}

/// Fails if the node's log holds `secret`.
fn assert_not_logged(rig: &Rig, secret: &str) {
    let log = rig.node.log_text();
    assert!(
        !log.contains(secret),
        "the node logged the password {secret:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profile_2_boots_over_wss_with_the_password_file_and_the_private_ca() {
    bounded(async {
        let secrets = Secrets::new("ocpp-security-ok", PASSWORD);
        let mut csms = secrets.csms(PASSWORD);
        let (text, config) = secrets.hub(&csms);
        let rig = Rig::start("ocpp-security-ok", config, Some(&text), "ocpp").await;

        let connected = csms.wait_for("RH-DEMO-A connected", |v| {
            v["event"] == "connected" && v["cp"] == "RH-DEMO-A"
        });
        assert_eq!(connected["subprotocol"], "ocpp1.6");
        // Schema-checked by `call`.
        let boot = csms.call("BootNotification", |_| true);
        assert_eq!(boot["payload"]["chargePointVendor"], "ringhub");
        assert!(
            !csms.seen.iter().any(|v| v["event"] == "unauthorized"),
            "csms.py refused a connection: {:?}",
            csms.seen
        );
        assert_not_logged(&rig, PASSWORD);
        assert_not_logged(&rig, "rh-demo-a:");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_the_node_keeps_it_to_itself() {
    bounded(async {
        let wrong = "rh-demo-a: not the key";
        let secrets = Secrets::new("ocpp-security-wrong", wrong);
        let mut csms = secrets.csms(PASSWORD);
        let (text, config) = secrets.hub(&csms);
        let mut rig = Rig::start("ocpp-security-wrong", config, Some(&text), "ocpp").await;

        // The TLS handshake succeeded (the CA is trusted), then the upgrade got 401.
        csms.wait_for("RH-DEMO-A unauthorized", |v| {
            v["event"] == "unauthorized" && v["cp"] == "RH-DEMO-A"
        });
        eventually("the node to log the 401", STEP, async || {
            let log = rig.node.log_text();
            if log.contains("HTTP 401") {
                Ok(())
            } else {
                Err(log.lines().last().unwrap_or("").to_owned())
            }
        })
        .await;
        assert!(
            csms.calls("BootNotification").is_empty(),
            "a refused charge point booted"
        );
        assert!(
            !csms
                .seen
                .iter()
                .any(|v| v["event"] == "connected" && v["cp"] == "RH-DEMO-A"),
            "a refused charge point connected"
        );
        assert_not_logged(&rig, wrong);
        rig.node.assert_running();
    })
    .await;
}
