//! The demo hub, the accessors, and one test per refusal: each checks the whole message,
//! line number included, on a small hub (`BASE`) with one line changed.

use super::*;

/// Two cabinets, two segments (a full one on cab-a, a module-only one on cab-b with its
/// tie absent), one dispenser. The line numbers in the tests below refer to this text.
const BASE: &str = r#"[hub]
id = "t"
site_limit_kw = 100

[[cabinets]]
id = "cab-a"
can = "socketcand:127.0.0.1:29536/cab-a"
data_dir = "/tmp/a"
metrics = "127.0.0.1:9101"
zenoh_listen = ["tcp/127.0.0.1:7447"]

[[cabinets]]
id = "cab-b"
can = "socketcand:127.0.0.1:29536/cab-b"
data_dir = "/tmp/b"
metrics = "127.0.0.1:9102"
zenoh_listen = ["tcp/127.0.0.1:7448"]

[[segments]]
id = 0
cabinet = "cab-a"
plc_slot = 0

[segments.gun]
id = 0
max_current_a = 500
max_voltage_v = 1000
dispenser = "disp-a"
connector = 1

[[segments.modules]]
id = 0
address = 0
max_power_kw = 50
max_current_a = 150
max_voltage_v = 1000

[[segments]]
id = 1
cabinet = "cab-b"
plc_slot = 0
tie = "absent"

[[segments.modules]]
id = 1
address = 0
max_power_kw = 50
max_current_a = 150
max_voltage_v = 1000

[[dispensers]]
id = "disp-a"
ocpp_identity = "RH-T-A"
"#;

/// `BASE` with the `n`th occurrence (0-based) of `from` replaced by `to`.
fn edit(n: usize, from: &str, to: &str) -> String {
    let at = BASE
        .match_indices(from)
        .nth(n)
        .map(|(at, _)| at)
        .unwrap_or_else(|| panic!("BASE has no occurrence {n} of {from:?}"));
    format!("{}{to}{}", &BASE[..at], &BASE[at + from.len()..])
}

/// The error message for a text that must be refused.
fn refused(text: &str) -> String {
    match HubConfig::parse(text, "t.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn base_parses() {
    let hub = HubConfig::parse(BASE, "t.toml").unwrap();
    assert_eq!(hub.hub.id, "t");
    assert_eq!(hub.hub.site_limit, Kilowatts(100.0));
    assert_eq!(hub.sim, SimConfig::default());
    assert_eq!(hub.segments[1].tie, Tie::Absent);
    assert!(hub.segments[1].gun.is_none());
    assert_eq!(hub.cabinets[0].auth, AuthMode::Free);
    // zenoh_connect defaults to the listen endpoints of the cabinets listed before.
    assert!(hub.cabinets[0].zenoh_connect.is_empty());
    assert_eq!(hub.cabinets[1].zenoh_connect, ["tcp/127.0.0.1:7447"]);
}

#[test]
fn demo_has_the_expected_hub() {
    let hub = HubConfig::demo();
    assert_eq!(hub.hub.id, "demo");
    assert_eq!(hub.hub.site_limit, Kilowatts(400.0));
    assert_eq!(hub.cabinets.len(), 3);
    assert_eq!(hub.segments.len(), 6);
    assert_eq!(hub.guns().count(), 6);
    assert_eq!(hub.modules().count(), 12);
    assert_eq!(hub.dispensers.len(), 3);
    assert!(hub.segments.iter().all(|s| s.tie == Tie::Fitted));
    assert!(hub.modules().all(|(_, m)| m.max_power == Kilowatts(50.0)
        && m.max_current == Amps(150.0)
        && m.max_voltage == Volts(1000.0)));
    assert!(hub.guns().all(|(_, g)| g.max_current == Amps(500.0)));
    assert_eq!(hub.sim, SimConfig::default());

    let cab_b = CabinetId::new("cab-b").unwrap();
    let cabinet = hub.cabinet(&cab_b).unwrap();
    assert_eq!(cabinet.can, "socketcand:127.0.0.1:29536/cab-b");
    assert_eq!(cabinet.metrics, "127.0.0.1:9102".parse().unwrap());
    assert_eq!(cabinet.zenoh_listen, ["tcp/127.0.0.1:7448"]);
    assert_eq!(cabinet.zenoh_connect, ["tcp/127.0.0.1:7447"]);
    let segments: Vec<_> = hub.segments_of(&cab_b).map(|s| s.id).collect();
    assert_eq!(segments, [SegmentId(2), SegmentId(3)]);
    let addresses: Vec<_> = hub
        .modules()
        .filter(|(s, _)| s.cabinet == cab_b)
        .map(|(_, m)| m.address.0)
        .collect();
    assert_eq!(addresses, [0, 1, 2, 3]);
    let identities: Vec<_> = hub
        .dispensers
        .iter()
        .map(|d| d.ocpp_identity.as_str())
        .collect();
    assert_eq!(identities, ["RH-DEMO-A", "RH-DEMO-B", "RH-DEMO-C"]);
}

#[test]
fn accessors_follow_the_references() {
    let hub = HubConfig::demo();
    assert_eq!(hub.cabinet_of_segment(SegmentId(5)).unwrap().id, "cab-c");
    assert_eq!(hub.cabinet_of_gun(GunId(2)).unwrap().id, "cab-b");
    assert_eq!(hub.cabinet_of_module(ModuleId(3)).unwrap().id, "cab-a");
    assert_eq!(
        hub.segment_of_module(ModuleId(11)).unwrap().id,
        SegmentId(5)
    );
    assert_eq!(hub.segment_of_gun(GunId(4)).unwrap().id, SegmentId(4));
    assert_eq!(hub.gun(GunId(3)).unwrap().connector, ConnectorId(2));
    assert_eq!(hub.module(ModuleId(7)).unwrap().address, ModuleAddress(3));
    assert_eq!(
        hub.dispenser_of_gun(GunId(5)).unwrap().ocpp_identity,
        "RH-DEMO-C"
    );
    let disp_a = DispenserId::new("disp-a").unwrap();
    let guns: Vec<_> = hub.guns_of(&disp_a).map(|g| g.id).collect();
    assert_eq!(guns, [GunId(0), GunId(1)]);
    assert!(hub.gun(GunId(6)).is_none());
    assert!(hub.segment(SegmentId(6)).is_none());
    assert!(hub.cabinet(&CabinetId::new("cab-z").unwrap()).is_none());

    let around = |i| hub.neighbours(SegmentId(i)).unwrap();
    assert_eq!(
        around(0),
        RingNeighbours {
            prev: SegmentId(5),
            next: SegmentId(1)
        }
    );
    assert_eq!(around(5).next, SegmentId(0));
    assert!(hub.neighbours(SegmentId(6)).is_none());
    let ties: Vec<_> = hub.ties().map(|(a, b, _)| (a.0, b.0)).collect();
    assert_eq!(ties, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0)]);
}

#[test]
fn load_reads_a_file_and_names_it_when_it_cannot() {
    let dir = std::env::temp_dir().join(format!("ringhub-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hub.toml");
    std::fs::write(&path, BASE).unwrap();
    assert_eq!(HubConfig::load(&path).unwrap().hub.id, "t");

    let missing = dir.join("missing.toml");
    let error = HubConfig::load(&missing).unwrap_err();
    assert_eq!(error.line, None);
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: cannot read the file: ", missing.display())),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sim_section_overrides_defaults() {
    let text = BASE.replacen(
        "\n[[cabinets]]",
        "\n[sim]\nsocketcand_port = 1\nwatchdog_timeout_ms = 200\n\n[[cabinets]]",
        1,
    );
    let sim = HubConfig::parse(&text, "t.toml").unwrap().sim;
    assert_eq!(sim.socketcand_port, 1);
    assert_eq!(sim.watchdog_timeout, Duration::from_millis(200));
    assert_eq!(sim.contactor_delay, Duration::from_millis(30));
}

#[test]
fn local_auth_takes_its_token_list() {
    let text = edit(
        0,
        "zenoh_listen = [\"tcp/127.0.0.1:7447\"]",
        "zenoh_listen = []\nauth = \"local\"\nlocal_auth_list = [\"04A2B3\"]\nzenoh_connect = []",
    );
    let hub = HubConfig::parse(&text, "t.toml").unwrap();
    assert_eq!(hub.cabinets[0].auth, AuthMode::Local);
    assert_eq!(hub.cabinets[0].local_auth_list, ["04A2B3"]);
    assert!(hub.cabinets[0].zenoh_connect.is_empty());
    assert!(hub.cabinets[1].zenoh_connect.is_empty());
}

// ---- refusals -------------------------------------------------------------------------

#[test]
fn toml_syntax_error_has_its_line() {
    // The parser's wording is its own; the place and the prefix are ours.
    let e = HubConfig::parse(&edit(0, "plc_slot = 0", "plc_slot = = 0"), "t.toml").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (Some(22), ""));
    assert!(
        e.to_string().starts_with("t.toml:22: invalid TOML: "),
        "{e}"
    );
    let e = HubConfig::parse(&edit(0, "[hub]", "[hub"), "t.toml").unwrap_err();
    assert_eq!((e.line, e.field.as_str()), (Some(1), ""));
    assert!(e.message.starts_with("invalid TOML: "), "{e}");
    let e = HubConfig::parse(&edit(1, "id = 0", "id = 0\nid = 1"), "t.toml").unwrap_err();
    assert_eq!(e.line, Some(26), "{e}");
    assert!(e.message.contains("duplicate key"), "{e}");
}

#[test]
fn unknown_field() {
    assert_eq!(
        refused(&edit(0, "plc_slot = 0", "plc_slott = 0")),
        "t.toml:22: segments[0].plc_slott: unknown field `plc_slott`, expected one of \
         `id`, `cabinet`, `plc_slot`, `tie`, `gun`, `modules`"
    );
    assert_eq!(
        refused(&edit(
            0,
            "max_power_kw = 50",
            "max_power_kw = 50\npower = 1"
        )),
        "t.toml:35: segments[0].modules[0].power: unknown field `power`, expected one of \
         `id`, `address`, `max_power_kw`, `max_current_a`, `max_voltage_v`"
    );
    assert!(
        refused(&format!("colour = 1\n{BASE}"))
            .starts_with("t.toml:1: colour: unknown field `colour`, expected one of `hub`, ")
    );
}

#[test]
fn missing_field() {
    assert_eq!(
        refused(&edit(0, "dispenser = \"disp-a\"\n", "")),
        "t.toml:24: segments[0].gun.dispenser: missing field `dispenser`"
    );
    assert_eq!(
        refused(&edit(0, "metrics = \"127.0.0.1:9102\"\n", "")),
        "t.toml:12: cabinets[1].metrics: missing field `metrics`"
    );
    assert_eq!(
        refused(&edit(0, "site_limit_kw = 100\n", "")),
        "t.toml:1: hub.site_limit_kw: missing field `site_limit_kw`"
    );
}

#[test]
fn wrong_type() {
    assert_eq!(
        refused(&edit(0, "plc_slot = 0", "plc_slot = \"0\"")),
        "t.toml:22: segments[0].plc_slot: invalid type: string \"0\", expected u8"
    );
    assert_eq!(
        refused(&edit(
            0,
            "[\"tcp/127.0.0.1:7448\"]",
            "[\"tcp/127.0.0.1:7448\", 7]"
        )),
        "t.toml:17: cabinets[1].zenoh_listen[1]: invalid type: integer `7`, expected a string"
    );
    assert_eq!(
        refused(&edit(0, "tie = \"absent\"", "tie = \"maybe\"")),
        "t.toml:42: segments[1].tie: unknown variant `maybe`, expected `fitted` or `absent`"
    );
}

#[test]
fn duplicate_ids() {
    assert_eq!(
        refused(&edit(0, "id = \"cab-b\"", "id = \"cab-a\"")),
        "t.toml:13: cabinets[1].id: duplicate cabinet id \"cab-a\": cabinets[0].id (line 6) \
         has it too"
    );
    assert_eq!(
        refused(&edit(0, "id = 1\naddress", "id = 0\naddress")),
        "t.toml:45: segments[1].modules[0].id: duplicate module id 0: \
         segments[0].modules[0].id (line 32) has it too"
    );
    assert_eq!(
        refused(&edit(
            0,
            "tie = \"absent\"\n",
            "tie = \"absent\"\n[segments.gun]\nid = 0\nmax_current_a = 1\nmax_voltage_v = 1\n\
             dispenser = \"disp-a\"\nconnector = 2\n"
        )),
        "t.toml:44: segments[1].gun.id: duplicate gun id 0: segments[0].gun.id (line 25) \
         has it too"
    );
    assert_eq!(
        refused(&format!(
            "{BASE}\n[[dispensers]]\nid = \"disp-a\"\nocpp_identity = \"X\"\n"
        )),
        "t.toml:56: dispensers[1].id: duplicate dispenser id \"disp-a\": dispensers[0].id \
         (line 52) has it too"
    );
}

#[test]
fn duplicate_bus_addresses_within_a_cabinet() {
    assert_eq!(
        refused(&edit(0, "cabinet = \"cab-b\"", "cabinet = \"cab-a\"")),
        "t.toml:41: segments[1].plc_slot: duplicate PLC slot 0 on cabinet \"cab-a\": \
         segments[0].plc_slot (line 22) has it too"
    );
    let text = edit(0, "cabinet = \"cab-b\"", "cabinet = \"cab-a\"").replacen(
        "plc_slot = 0\ntie",
        "plc_slot = 1\ntie",
        1,
    );
    assert_eq!(
        refused(&text),
        "t.toml:46: segments[1].modules[0].address: duplicate module address 0 on cabinet \
         \"cab-a\": segments[0].modules[0].address (line 33) has it too"
    );
}

#[test]
fn duplicate_connector_within_a_dispenser() {
    let text = edit(
        0,
        "tie = \"absent\"\n",
        "tie = \"absent\"\n[segments.gun]\nid = 1\nmax_current_a = 1\nmax_voltage_v = 1\n\
         dispenser = \"disp-a\"\nconnector = 1\n",
    );
    assert_eq!(
        refused(&text),
        "t.toml:48: segments[1].gun.connector: duplicate connector 1 on dispenser \"disp-a\": \
         segments[0].gun.connector (line 29) has it too"
    );
    assert_eq!(
        refused(&edit(0, "connector = 1", "connector = 0")),
        "t.toml:29: segments[0].gun.connector: OCPP connector ids count from 1 (0 is the \
         charge point itself)"
    );
}

#[test]
fn dangling_references() {
    assert_eq!(
        refused(&edit(0, "cabinet = \"cab-b\"", "cabinet = \"cab-z\"")),
        "t.toml:40: segments[1].cabinet: unknown cabinet \"cab-z\" (known: cab-a, cab-b)"
    );
    assert_eq!(
        refused(&edit(0, "dispenser = \"disp-a\"", "dispenser = \"disp-q\"")),
        "t.toml:28: segments[0].gun.dispenser: unknown dispenser \"disp-q\" (known: disp-a)"
    );
    let no_dispensers = &BASE[..BASE.find("\n[[dispensers]]").unwrap()];
    assert_eq!(
        refused(no_dispensers),
        "t.toml:28: segments[0].gun.dispenser: unknown dispenser \"disp-a\" (none: add a \
         [[dispensers]] table)"
    );
}

#[test]
fn out_of_range_numbers() {
    assert_eq!(
        refused(&edit(0, "plc_slot = 0", "plc_slot = 16")),
        "t.toml:22: segments[0].plc_slot: PLC slot 16 is out of range 0..=15"
    );
    assert_eq!(
        refused(&edit(0, "plc_slot = 0", "plc_slot = 256")),
        "t.toml:22: segments[0].plc_slot: invalid value: integer `256`, expected u8"
    );
    assert_eq!(
        refused(&edit(0, "max_current_a = 500", "max_current_a = 0")),
        "t.toml:26: segments[0].gun.max_current_a: must be above 0, not 0"
    );
    assert_eq!(
        refused(&edit(1, "max_voltage_v = 1000", "max_voltage_v = -400")),
        "t.toml:36: segments[0].modules[0].max_voltage_v: must be above 0, not -400"
    );
    assert_eq!(
        refused(&edit(1, "max_power_kw = 50", "max_power_kw = nan")),
        "t.toml:47: segments[1].modules[0].max_power_kw: must be above 0, not NaN"
    );
}

#[test]
fn site_limit_must_be_positive() {
    assert_eq!(
        refused(&edit(0, "site_limit_kw = 100", "site_limit_kw = 0")),
        "t.toml:3: hub.site_limit_kw: must be above 0, not 0"
    );
    assert_eq!(
        refused(&edit(0, "site_limit_kw = 100", "site_limit_kw = -5.5")),
        "t.toml:3: hub.site_limit_kw: must be above 0, not -5.5"
    );
}

#[test]
fn segment_ids_follow_ring_order() {
    assert_eq!(
        refused(&edit(0, "id = 1\ncabinet", "id = 2\ncabinet")),
        "t.toml:39: segments[1].id: segment id 2 at ring position 1: segments are listed in \
         ring order and numbered from 0, so this one must be 1"
    );
}

#[test]
fn empty_hub() {
    let hub_only = "# nothing yet\n[hub]\nid = \"t\"\nsite_limit_kw = 1\n";
    assert_eq!(
        refused(hub_only),
        "t.toml:2: cabinets: the hub has no cabinets: add at least one [[cabinets]] table"
    );
    let no_segments = &BASE[..BASE.find("\n[[segments]]").unwrap()];
    assert_eq!(
        refused(no_segments),
        "t.toml:1: segments: the hub has no segments: add at least one [[segments]] table"
    );
    assert_eq!(refused(""), "t.toml:1: hub: missing field `hub`");
}

#[test]
fn cabinet_without_segments() {
    assert_eq!(
        refused(&edit(0, "cabinet = \"cab-b\"", "cabinet = \"cab-a\"")
            .replacen("plc_slot = 0\ntie", "plc_slot = 1\ntie", 1)
            .replacen("address = 0\nmax_power_kw = 50\nmax_current_a = 150\nmax_voltage_v = 1000\n\n[[dispensers]]",
                "address = 1\nmax_power_kw = 50\nmax_current_a = 150\nmax_voltage_v = 1000\n\n[[dispensers]]", 1)),
        "t.toml:13: cabinets[1].id: cabinet \"cab-b\" has no segment: give it one, or remove it"
    );
}

#[test]
fn dispenser_without_guns() {
    assert_eq!(
        refused(&format!(
            "{BASE}\n[[dispensers]]\nid = \"disp-b\"\nocpp_identity = \"RH-T-B\"\n"
        )),
        "t.toml:56: dispensers[1].id: dispenser \"disp-b\" has no gun: name it in a \
         [segments.gun] table, or remove it"
    );
}

#[test]
fn bad_ids_and_addresses() {
    assert_eq!(
        refused(&edit(0, "id = \"t\"", "id = \"My Hub\"")),
        "t.toml:2: hub.id: \"My Hub\" has 'M': ids use only a-z, 0-9 and '-'"
    );
    assert_eq!(
        refused(&edit(0, "\"127.0.0.1:9101\"", "\"localhost:9101\"")),
        "t.toml:9: cabinets[0].metrics: \"localhost:9101\" is not an IP address and port \
         (like \"127.0.0.1:9101\")"
    );
    assert_eq!(
        refused(&edit(0, "[\"tcp/127.0.0.1:7447\"]", "[\"127.0.0.1:7447\"]")),
        "t.toml:10: cabinets[0].zenoh_listen[0]: \"127.0.0.1:7447\" is not a Zenoh endpoint \
         <protocol>/<address> (like \"tcp/127.0.0.1:7447\")"
    );
    assert_eq!(
        refused(&edit(
            0,
            "ocpp_identity = \"RH-T-A\"",
            "ocpp_identity = \"RH-T-A\"\ncsms_url = \"http://x\""
        )),
        "t.toml:54: dispensers[0].csms_url: \"http://x\" is not a ws:// or wss:// URL"
    );
}

#[test]
fn two_cabinets_that_connect_to_each_other_are_refused() {
    let a_to_b = |text: &str| {
        text.replacen(
            "zenoh_listen = [\"tcp/127.0.0.1:7447\"]",
            "zenoh_listen = [\"tcp/127.0.0.1:7447\"]\nzenoh_connect = [\"tcp/127.0.0.1:7448\"]",
            1,
        )
    };
    let b_to = |text: &str, list: &str| {
        text.replacen(
            "zenoh_listen = [\"tcp/127.0.0.1:7448\"]",
            &format!("zenoh_listen = [\"tcp/127.0.0.1:7448\"]\nzenoh_connect = {list}"),
            1,
        )
    };
    let refusal = |at: &str, from: &str, to: &str| {
        format!(
            "{at}: {from} connects to {to} here, and {to} connects to {from} too: keep one \
             link per pair (leave zenoh_connect out and the cabinet listed later connects), \
             two can lose messages after a node stalls"
        )
    };
    // Both by hand: the later cabinet's entry is named.
    assert_eq!(
        refused(&b_to(&a_to_b(BASE), "[\"tcp/127.0.0.1:7447\"]")),
        refusal("t.toml:19: cabinets[1].zenoh_connect[0]", "cab-b", "cab-a")
    );
    // cab-a by hand, cab-b by default (it connects to the cabinets before it).
    assert_eq!(
        refused(&a_to_b(BASE)),
        refusal("t.toml:11: cabinets[0].zenoh_connect[0]", "cab-a", "cab-b")
    );
    // One side only, the other way round from the default: accepted.
    let hub = HubConfig::parse(&b_to(&a_to_b(BASE), "[]"), "t.toml").unwrap();
    assert_eq!(hub.cabinets[0].zenoh_connect, ["tcp/127.0.0.1:7448"]);
    assert!(hub.cabinets[1].zenoh_connect.is_empty());
}

#[test]
fn local_auth_needs_its_list_and_only_it_has_one() {
    assert_eq!(
        refused(&edit(
            0,
            "data_dir = \"/tmp/a\"",
            "data_dir = \"/tmp/a\"\nauth = \"local\""
        )),
        "t.toml:9: cabinets[0].auth: auth = \"local\" needs a local_auth_list of the id tokens \
         to accept"
    );
    assert_eq!(
        refused(&edit(
            0,
            "data_dir = \"/tmp/a\"",
            "data_dir = \"/tmp/a\"\nlocal_auth_list = []"
        )),
        "t.toml:9: cabinets[0].local_auth_list: is used only with auth = \"local\""
    );
}

// ---- CSMS security --------------------------------------------------------------------

/// `BASE` with `lines` added to its dispenser: the first added line is line 54.
fn dispenser_with(lines: &str) -> String {
    format!("{BASE}{lines}")
}

#[test]
fn security_profiles_parse() {
    let hub = HubConfig::parse(BASE, "t.toml").unwrap();
    assert_eq!(hub.dispensers[0].security, CsmsSecurity::Unsecured);
    assert_eq!(hub.dispensers[0].csms_ca_file, None);
    assert!(
        HubConfig::demo()
            .dispensers
            .iter()
            .all(|d| d.security == CsmsSecurity::Unsecured && d.csms_ca_file.is_none()),
        "the demo hub connects without credentials"
    );

    let text = dispenser_with(
        "csms_url = \"ws://csms/ocpp\"\nsecurity_profile = 1\ncsms_password_file = \"/etc/rh/a.key\"\n",
    );
    let dispenser = &HubConfig::parse(&text, "t.toml").unwrap().dispensers[0];
    assert_eq!(
        dispenser.security,
        CsmsSecurity::BasicAuth {
            password_file: "/etc/rh/a.key".into()
        }
    );
    assert_eq!(dispenser.security.profile(), 1);

    let text = dispenser_with(
        "csms_url = \"wss://csms/ocpp\"\nsecurity_profile = 2\ncsms_password_file = \"a.key\"\n\
         csms_ca_file = \"ca.pem\"\n",
    );
    let dispenser = &HubConfig::parse(&text, "t.toml").unwrap().dispensers[0];
    assert_eq!(dispenser.security.password_file(), Some(Path::new("a.key")));
    assert!(dispenser.security.needs_tls());
    assert_eq!(dispenser.csms_ca_file, Some(PathBuf::from("ca.pem")));

    // Without a csms_url (it may come from the node's --csms flag) the profile stands.
    let text = dispenser_with("security_profile = 2\ncsms_password_file = \"a.key\"\n");
    let dispenser = &HubConfig::parse(&text, "t.toml").unwrap().dispensers[0];
    assert_eq!(dispenser.security.profile(), 2);

    // Profile 0 over wss://: TLS without credentials, with a private CA.
    let text = dispenser_with(
        "csms_url = \"wss://csms/ocpp\"\nsecurity_profile = 0\ncsms_ca_file = \"ca.pem\"\n",
    );
    let dispenser = &HubConfig::parse(&text, "t.toml").unwrap().dispensers[0];
    assert_eq!(dispenser.security, CsmsSecurity::Unsecured);
    assert_eq!(dispenser.csms_ca_file, Some(PathBuf::from("ca.pem")));
}

#[test]
fn load_makes_dispenser_files_relative_to_the_config_dir() {
    let dir = std::env::temp_dir().join(format!("ringhub-config-rel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("hub.toml");
    let text = dispenser_with(
        "csms_url = \"wss://csms/ocpp\"\nsecurity_profile = 2\n\
         csms_password_file = \"secrets/a.key\"\ncsms_ca_file = \"/etc/rh/ca.pem\"\n",
    );
    std::fs::write(&path, &text).unwrap();
    let loaded = HubConfig::load(&path).unwrap();
    let dispenser = &loaded.dispensers[0];
    assert_eq!(
        dispenser.security.password_file(),
        Some(dir.join("secrets/a.key").as_path()),
        "relative: from the config's directory"
    );
    assert_eq!(
        dispenser.csms_ca_file,
        Some(PathBuf::from("/etc/rh/ca.pem")),
        "absolute: as written"
    );
    // A parsed text has no directory: the paths stay as written.
    let parsed = HubConfig::parse(&text, "t.toml").unwrap();
    assert_eq!(
        parsed.dispensers[0].security.password_file(),
        Some(Path::new("secrets/a.key"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unsupported_and_unknown_security_profiles() {
    assert_eq!(
        refused(&dispenser_with("security_profile = 3\n")),
        "t.toml:54: dispensers[0].security_profile: security profile 3 (TLS client \
         certificates) is not supported: use 2 (Basic auth over wss://)"
    );
    for bad in ["4", "-1"] {
        assert_eq!(
            refused(&dispenser_with(&format!("security_profile = {bad}\n"))),
            format!(
                "t.toml:54: dispensers[0].security_profile: {bad} is not a security profile: \
                 use 0 (no credentials), 1 (Basic auth over ws://) or 2 (Basic auth over \
                 wss://)"
            )
        );
    }
    assert_eq!(
        refused(&dispenser_with("security_profile = \"2\"\n")),
        "t.toml:54: dispensers[0].security_profile: invalid type: string \"2\", expected i64"
    );
}

#[test]
fn password_file_goes_with_profiles_1_and_2_only() {
    for profile in [1, 2] {
        assert_eq!(
            refused(&dispenser_with(&format!(
                "\nsecurity_profile = {profile}\n"
            ))),
            format!(
                "t.toml:55: dispensers[0].security_profile: security_profile = {profile} needs \
                 csms_password_file, the file holding the AuthorizationKey (the Basic auth \
                 password)"
            )
        );
    }
    assert_eq!(
        refused(&dispenser_with("csms_password_file = \"a.key\"\n")),
        "t.toml:54: dispensers[0].csms_password_file: is used only with security_profile = 1 \
         or 2"
    );
    assert_eq!(
        refused(&dispenser_with(
            "security_profile = 0\ncsms_password_file = \"a.key\"\n"
        )),
        "t.toml:55: dispensers[0].csms_password_file: is used only with security_profile = 1 \
         or 2"
    );
    assert_eq!(
        refused(&dispenser_with(
            "security_profile = 1\ncsms_password_file = \" \"\n"
        )),
        "t.toml:55: dispensers[0].csms_password_file: cannot be empty"
    );
}

#[test]
fn the_url_scheme_follows_the_profile() {
    assert_eq!(
        refused(&dispenser_with(
            "csms_url = \"ws://csms/ocpp\"\nsecurity_profile = 2\ncsms_password_file = \"k\"\n"
        )),
        "t.toml:54: dispensers[0].csms_url: security_profile = 2 (line 55) sends the password \
         over TLS only: the URL must be wss://, not \"ws://csms/ocpp\""
    );
    assert_eq!(
        refused(&dispenser_with(
            "security_profile = 1\ncsms_password_file = \"k\"\ncsms_url = \"wss://csms/ocpp\"\n"
        )),
        "t.toml:56: dispensers[0].csms_url: security_profile = 1 (line 54) is Basic auth over \
         plain ws://: for \"wss://csms/ocpp\" use security_profile = 2"
    );
}

#[test]
fn ca_file_goes_with_wss_only() {
    let only_wss = "is used only over wss:// (security_profile = 2, or 0 with a wss:// csms_url)";
    assert_eq!(
        refused(&dispenser_with(
            "csms_url = \"ws://csms/ocpp\"\ncsms_ca_file = \"ca.pem\"\n"
        )),
        format!("t.toml:55: dispensers[0].csms_ca_file: {only_wss}")
    );
    assert_eq!(
        refused(&dispenser_with(
            "security_profile = 1\ncsms_password_file = \"k\"\ncsms_ca_file = \"ca.pem\"\n"
        )),
        format!("t.toml:56: dispensers[0].csms_ca_file: {only_wss}")
    );
    assert_eq!(
        refused(&dispenser_with("csms_ca_file = \"\"\n")),
        "t.toml:54: dispensers[0].csms_ca_file: cannot be empty"
    );
}

#[test]
fn transaction_start_parses_with_energy_by_default() {
    let hub = HubConfig::parse(BASE, "t.toml").unwrap();
    assert_eq!(
        hub.dispensers[0].transaction_start,
        TransactionStart::Energy
    );
    let text = dispenser_with("transaction_start = \"ev_connected\"\n");
    let hub = HubConfig::parse(&text, "t.toml").unwrap();
    assert_eq!(
        hub.dispensers[0].transaction_start,
        TransactionStart::EvConnected
    );
    let text = dispenser_with("transaction_start = \"plug\"\n");
    let message = refused(&text);
    assert!(
        message.starts_with("t.toml:54: dispensers[0].transaction_start: unknown variant `plug`"),
        "{message}"
    );
}
