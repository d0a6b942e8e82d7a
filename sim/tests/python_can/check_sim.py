#!/usr/bin/env python3
"""Cross-check of ringhub-sim with independent peers: python-can's `socketcand` interface
as the client of its buses, and `cantools` to encode and decode every frame from the DBC
(proto/can/ringhub.dbc), independently of our Rust codec (DESIGN.md §7).

It starts nothing: give it the addresses of a running simulator (a fresh one: the checks
assume nobody else drives cab-a) and the hub config it runs (the demo hub by default).
Checks, each bounded by its own deadlines and run even when an earlier one failed:

1. heartbeats: for every cabinet it listens to the bus for a window of seconds; every
   frame must be in the DBC and decode; every PLC's PlcHeartbeat arrives at its 100 ms
   rate (count within 70..130 % of window / 100 ms, mean period between the server's
   timestamps within 90..110 ms, between arrivals at the client within 80..120 ms, no gap
   in its Counter); every power module's ModuleStatus arrives at least once.

Then, as the host of cab-a (heartbeats every 100 ms to slots 0 and 1, relay commands and
module setpoints refreshed at the same pace):

2. watchdog: MC0 and the tie of slot 0 closed, the heartbeats stop; within 2 s PlcState
   goes WatchdogTripped and RelayFeedback shows everything open, more than the 500 ms
   watchdog time after the last heartbeat; no referee violation.
3. gc-auth: GC of slot 1 commanded closed without authorisation is refused:
   RefusedReason AuthNotAccepted, GcFeedback 0.
4. unsafe-tie: modules 0 and 2 (first module of segments 0 and 1) at 400 V and 300 V on
   their buses, then the tie of slot 0 closed: the referee (GET /violations) records an
   S3 violation for "tie 0-1" across ~100 V.

It prints what it measured and a summary table, and exits 1 on any failure.

    python check_sim.py --port 29536 --control 127.0.0.1:29537 [--host 127.0.0.1]
        [--config deploy/hubs/demo.toml] [--dbc proto/can/ringhub.dbc] [--only watchdog]
"""

import argparse
import json
import pathlib
import re
import statistics
import sys
import threading
import time
import tomllib
import traceback
import urllib.request
from dataclasses import dataclass

import can
import cantools

HERE = pathlib.Path(__file__).resolve().parent
DEMO = HERE / "../../../deploy/hubs/demo.toml"
DBC = HERE / "../../../proto/can/ringhub.dbc"

HEARTBEAT_PERIOD_S = 0.100
WATCHDOG_TIMEOUT_MS = 500
HOST_CABINET = "cab-a"
HOST_SLOTS = (0, 1)
CHECKS = ("heartbeats", "watchdog", "gc-auth", "unsafe-tie")


class CheckFailed(Exception):
    """A check saw something it must not."""


class Catalog:
    """The DBC, read with cantools: frame ids carry a device address in their low bits
    (attribute RingHubAddressBits: 4 for the PLC slot, 8 for the module address)."""

    def __init__(self, path):
        self.db = cantools.database.load_file(str(path))
        self.by_base = {}
        for message in self.db.messages:
            attribute = message.dbc.attributes.get("RingHubAddressBits") if message.dbc else None
            bits = int(attribute.value) if attribute is not None else 0
            self.by_base[(message.frame_id, message.is_extended_frame)] = (message, bits)
        self.bit_widths = sorted({bits for (_, bits) in self.by_base.values()})

    def message(self, name):
        return self.db.get_message_by_name(name)

    def frame_id(self, name, address):
        return self.message(name).frame_id + address

    def value(self, name, signal, label):
        """The raw value of a named choice of a signal, from the DBC's VAL_ table."""
        choices = self.message(name).get_signal_by_name(signal).choices or {}
        for raw, text in choices.items():
            if str(text) == label:
                return raw
        raise KeyError(f"{name}.{signal} has no value {label!r}")

    def label(self, name, signal, raw):
        choices = self.message(name).get_signal_by_name(signal).choices or {}
        return str(choices.get(raw, raw))

    def identify(self, arbitration_id, extended):
        """(message, address) of a frame id, or None if the DBC has no such frame."""
        for bits in self.bit_widths:
            base = arbitration_id & ~((1 << bits) - 1)
            found = self.by_base.get((base, extended))
            if found is not None and found[1] == bits:
                return found[0], arbitration_id - base
        return None

    def decode(self, frame):
        """(name, address, signals) of a received can.Message; raises on anything the
        DBC does not describe."""
        found = self.identify(frame.arbitration_id, frame.is_extended_id)
        if found is None:
            raise ValueError(f"id 0x{frame.arbitration_id:X} is not in the DBC")
        message, address = found
        signals = message.decode(bytes(frame.data), decode_choices=False, scaling=True)
        return message.name, address, signals

    def encode(self, name, address, signals):
        message = self.message(name)
        data = message.encode(signals, scaling=True, strict=True)
        return can.Message(
            arbitration_id=message.frame_id + address,
            is_extended_id=message.is_extended_frame,
            data=data,
        )


def devices(config_path):
    """{cabinet: (plc slots, module addresses)} from a hub config."""
    with open(config_path, "rb") as f:
        config = tomllib.load(f)
    buses = {c["id"]: ([], []) for c in config["cabinets"]}
    for segment in config["segments"]:
        slots, modules = buses[segment["cabinet"]]
        slots.append(segment["plc_slot"])
        modules.extend(m["address"] for m in segment.get("modules", []))
    return buses


# ---------------------------------------------------------------------------------------
# 1. heartbeats


def listen(host, port, cabinet, seconds, out):
    """Records every frame (can.Message, arrival) for `seconds`."""
    frames = []
    try:
        bus = can.Bus(interface="socketcand", host=host, port=port, channel=cabinet)
    except Exception as error:  # noqa: BLE001 - reported as a failure of this bus
        out[cabinet] = error
        return
    try:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            message = bus.recv(timeout=left)
            if message is not None:
                frames.append((message, time.monotonic()))
    finally:
        bus.shutdown()
    out[cabinet] = frames


def check_heartbeats(args, catalog, buses, table):
    recorded = {}
    threads = [
        threading.Thread(target=listen, args=(args.host, args.port, cabinet, args.seconds, recorded))
        for cabinet in buses
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=args.seconds + 30)

    failures = []
    expected = args.seconds / HEARTBEAT_PERIOD_S
    low, high = 0.7 * expected, 1.3 * expected
    for cabinet, (slots, modules) in buses.items():
        frames = recorded.get(cabinet)
        if not isinstance(frames, list):
            failures.append(f"{cabinet}: cannot listen: {frames!r}")
            continue
        decoded = []
        undecodable = []
        for message, arrival in frames:
            try:
                name, address, signals = catalog.decode(message)
            except Exception as error:  # noqa: BLE001 - every frame must decode
                undecodable.append(f"{message.arbitration_id:X}#{bytes(message.data).hex()}: {error}")
                continue
            decoded.append((name, address, signals, message.timestamp, arrival))
        print(f"{cabinet}: {len(frames)} frames in {args.seconds:.1f} s, all decoded by cantools"
              if not undecodable else f"{cabinet}: {len(frames)} frames, {len(undecodable)} undecodable")
        if undecodable:
            failures.append(f"{cabinet}: {len(undecodable)} frames cantools cannot decode, e.g. {undecodable[0]}")
        for slot in sorted(slots):
            beats = [(s, t, at) for (n, a, s, t, at) in decoded if n == "PlcHeartbeat" and a == slot]
            stamps = [t for (_, t, _) in beats]
            periods_ms = [(b - a) * 1000 for a, b in zip(stamps, stamps[1:])]
            mean = statistics.mean(periods_ms) if periods_ms else float("nan")
            arrivals_ms = [(b[2] - a[2]) * 1000 for a, b in zip(beats, beats[1:])]
            arrival_mean = statistics.mean(arrivals_ms) if arrivals_ms else float("nan")
            counters = [int(s["Counter"]) for (s, _, _) in beats]
            gaps = sum(1 for a, b in zip(counters, counters[1:]) if (b - a) % 256 != 1)
            spread = f"{min(periods_ms):.1f}..{max(periods_ms):.1f}" if periods_ms else "-"
            print(
                f"  PLC slot {slot}: PlcHeartbeat 0x{catalog.frame_id('PlcHeartbeat', slot):03X}"
                f" x{len(stamps)} (expected {expected:.0f}), period mean {mean:.1f} ms, range {spread} ms;"
                f" arrival period mean {arrival_mean:.1f} ms; counter gaps {gaps}"
            )
            table.append((f"heartbeats {cabinet}/{slot}", f"x{len(stamps)}, {mean:.1f} ms mean", "90..110 ms"))
            if not low <= len(stamps) <= high:
                failures.append(
                    f"{cabinet} slot {slot}: {len(stamps)} heartbeats in {args.seconds} s,"
                    f" expected {low:.0f}..{high:.0f}"
                )
            if not periods_ms or not 90.0 <= mean <= 110.0:
                failures.append(f"{cabinet} slot {slot}: mean heartbeat period {mean:.1f} ms")
            if not arrivals_ms or not 80.0 <= arrival_mean <= 120.0:
                failures.append(f"{cabinet} slot {slot}: heartbeats arrive every {arrival_mean:.1f} ms on average")
            if gaps:
                failures.append(f"{cabinet} slot {slot}: {gaps} gaps in the heartbeat counter {counters}")
        for address in sorted(modules):
            count = sum(1 for (n, a, _, _, _) in decoded if n == "ModuleStatus" and a == address)
            rate = count / args.seconds
            print(
                f"  module {address}: ModuleStatus 0x{catalog.frame_id('ModuleStatus', address):08X}"
                f" x{count} ({rate:.1f}/s)"
            )
            if count == 0:
                failures.append(f"{cabinet} module {address}: no ModuleStatus frame")
    if failures:
        raise CheckFailed("; ".join(failures))


# ---------------------------------------------------------------------------------------
# The host of cab-a


@dataclass
class Frame:
    arrival: float
    name: str
    address: int
    signals: dict


class Host:
    """A host on one cabinet bus, written the way the node will be: a paced 100 ms loop
    sends heartbeats and refreshes relay commands and module setpoints; one receiver
    thread decodes every frame. `silent` stops all of it at once, as a dead host would."""

    def __init__(self, catalog, host, port, cabinet, slots):
        self.catalog = catalog
        self.slots = slots
        self.bus = can.Bus(interface="socketcand", host=host, port=port, channel=cabinet)
        self.send_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.changed = threading.Condition()
        self.frames = []
        self.errors = []
        self.stop = threading.Event()
        self.alive = False
        self.last_heartbeat = None
        self.counter = 0
        self.sequence = {slot: 0 for slot in slots}
        self.relays = {}  # slot -> (gc, mc, mn, emergency)
        self.modules = {}  # address -> (on, volts, amps)
        self.threads = [
            threading.Thread(target=self._receive, daemon=True),
            threading.Thread(target=self._pace, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def close(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=2)
        self.bus.shutdown()

    def _send(self, name, address, signals):
        message = self.catalog.encode(name, address, signals)
        with self.send_lock:
            self.bus.send(message)

    def _receive(self):
        while not self.stop.is_set():
            try:
                message = self.bus.recv(timeout=0.05)
            except Exception as error:  # noqa: BLE001 - the checks report it
                self.errors.append(f"receive: {error!r}")
                return
            if message is None:
                continue
            arrival = time.monotonic()
            try:
                name, address, signals = self.catalog.decode(message)
            except Exception as error:  # noqa: BLE001
                self.errors.append(f"undecodable {message.arbitration_id:X}#{bytes(message.data).hex()}: {error}")
                continue
            with self.changed:
                self.frames.append(Frame(arrival, name, address, signals))
                self.changed.notify_all()

    def _pace(self):
        next_at = time.monotonic()
        while not self.stop.is_set():
            with self.state_lock:
                if self.alive:
                    self._periodic()
            next_at += HEARTBEAT_PERIOD_S
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def _periodic(self):
        """One 100 ms tick of the host's duties (state_lock held)."""
        self.counter = (self.counter + 1) % 256
        for slot in self.slots:
            self._send(
                "HostHeartbeat",
                slot,
                {
                    "Counter": self.counter,
                    "HostState": self.catalog.value("HostHeartbeat", "HostState", "Running"),
                    "WatchdogTimeout": WATCHDOG_TIMEOUT_MS,
                },
            )
        self.last_heartbeat = time.monotonic()
        for slot in self.relays:
            self._send_relay(slot)
        for address in self.modules:
            self._send_module(address)

    def _send_relay(self, slot):
        gc, mc, mn, emergency = self.relays[slot]
        self._send(
            "RelayCommand",
            slot,
            {"Sequence": self.sequence[slot], "GcMask": gc, "McMask": mc, "MnMask": mn, "Emergency": int(emergency)},
        )

    def _send_module(self, address):
        on, volts, amps = self.modules[address]
        self._send("ModuleSetpoint", address, {"Voltage": volts, "CurrentLimit": amps, "PowerLimit": 50.0})
        enable = self.catalog.value("ModuleEnable", "Enable", "On" if on else "Off")
        self._send("ModuleEnable", address, {"Enable": enable, "Sequence": 0})

    # -- what the checks do

    def go_alive(self):
        with self.state_lock:
            if not self.alive:
                self.alive = True
                self._periodic()

    def go_silent(self):
        """Stops every periodic frame; returns when the last heartbeat went out."""
        with self.state_lock:
            self.alive = False
            return self.last_heartbeat

    def relay(self, slot, gc=0, mc=0, mn=0, emergency=False):
        """Commands a slot's contactors (sent now if the host is alive, then refreshed
        every 100 ms); returns the command's sequence."""
        with self.state_lock:
            self.sequence[slot] = (self.sequence[slot] + 1) % 256
            self.relays[slot] = (gc, mc, mn, emergency)
            if self.alive:
                self._send_relay(slot)
            return self.sequence[slot]

    def module(self, address, on, volts=0.0, amps=0.0):
        with self.state_lock:
            self.modules[address] = (on, volts, amps)
            if self.alive:
                self._send_module(address)

    def mark(self):
        with self.changed:
            return len(self.frames)

    def wait(self, name, address, predicate, deadline, since, what):
        """The first frame `name` from `address` at index >= `since` satisfying
        `predicate`, before `deadline` (monotonic); raises CheckFailed otherwise."""
        index = since
        last = None
        with self.changed:
            while True:
                while index < len(self.frames):
                    frame = self.frames[index]
                    index += 1
                    if frame.name == name and frame.address == address:
                        last = frame
                        if predicate(frame.signals):
                            return frame
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = f"; last {name} from {address}: {last.signals}" if last else f"; no {name} from {address}"
                    raise CheckFailed(f"timed out waiting for {what}{seen}")
                self.changed.wait(timeout=left)

    def frames_between(self, name, address, start, end):
        with self.changed:
            return [f for f in self.frames[start:end] if f.name == name and f.address == address]


def control_get(args, path):
    if not args.control:
        raise CheckFailed("--control ADDR is needed to read the referee")
    with urllib.request.urlopen(f"http://{args.control}{path}", timeout=5) as response:
        return json.load(response)


def all_open(signals):
    return signals["GcFeedback"] == 0 and signals["McFeedback"] == 0 and signals["MnFeedback"] == 0


def wait_ready(host, catalog, slots, seconds=2.0):
    ready = catalog.value("PlcHeartbeat", "PlcState", "Ready")
    deadline = time.monotonic() + seconds
    since = host.mark()
    for slot in slots:
        host.wait("PlcHeartbeat", slot, lambda s: s["PlcState"] == ready, deadline, since, f"slot {slot} Ready")


def open_everything(host, catalog, emergency=False, seconds=2.0):
    """Back to the rest state: heartbeats on, modules off, every contactor open."""
    host.go_alive()
    for address in list(host.modules):
        host.module(address, False)
    wait_ready(host, catalog, host.slots)
    deadline = time.monotonic() + seconds
    for slot in host.slots:
        since = host.mark()
        sequence = host.relay(slot, emergency=emergency)
        host.wait(
            "RelayFeedback",
            slot,
            lambda s, q=sequence: s["AckSequence"] == q and all_open(s),
            deadline,
            since,
            f"slot {slot} open",
        )


# ---------------------------------------------------------------------------------------
# 2. watchdog


def check_watchdog(args, catalog, host, table):
    open_everything(host, catalog)
    before = len(control_get(args, "/violations")) if args.control else None
    since = host.mark()
    sequence = host.relay(0, mc=1, mn=1)
    host.wait(
        "RelayFeedback",
        0,
        lambda s: s["AckSequence"] == sequence and s["McFeedback"] & 1 and s["MnFeedback"] & 1,
        time.monotonic() + 1.0,
        since,
        "MC0 and the tie of slot 0 closed",
    )
    print("  watchdog: MC0 and tie of slot 0 closed; stopping host heartbeats")
    since = host.mark()
    last = host.go_silent()
    tripped = catalog.value("PlcHeartbeat", "PlcState", "WatchdogTripped")
    deadline = last + 2.0
    trip = {}
    for slot in host.slots:
        frame = host.wait(
            "PlcHeartbeat", slot, lambda s: s["PlcState"] == tripped, deadline, since, f"slot {slot} WatchdogTripped"
        )
        trip[slot] = (frame.arrival - last) * 1000
    opened = host.wait("RelayFeedback", 0, all_open, deadline, since, "slot 0 RelayFeedback all open")
    open_ms = (opened.arrival - last) * 1000
    closed_frames = host.frames_between("RelayFeedback", 0, since, host.mark())
    last_closed = max((f.arrival for f in closed_frames if not all_open(f.signals)), default=None)
    last_closed_ms = (last_closed - last) * 1000 if last_closed is not None else float("nan")
    print(
        f"  watchdog: after the last host heartbeat: PlcState WatchdogTripped seen at"
        f" {trip[0]:.0f} ms (slot 0), {trip[1]:.0f} ms (slot 1); RelayFeedback last closed at"
        f" {last_closed_ms:.0f} ms, all open at {open_ms:.0f} ms ({opened.signals})"
    )
    table.append(("watchdog: last heartbeat -> tripped", f"{trip[0]:.0f} / {trip[1]:.0f} ms", "> 500 ms, < 2 s"))
    table.append(("watchdog: last heartbeat -> open", f"{open_ms:.0f} ms", "> 500 ms, < 2 s"))
    failures = []
    if open_ms <= WATCHDOG_TIMEOUT_MS:
        failures.append(f"contactors opened {open_ms:.0f} ms after the last heartbeat, before the 500 ms watchdog time")
    for slot, ms in trip.items():
        if ms <= WATCHDOG_TIMEOUT_MS:
            failures.append(f"slot {slot} tripped {ms:.0f} ms after the last heartbeat, before 500 ms")
    if before is not None:
        new = control_get(args, "/violations")[before:]
        if new:
            failures.append(f"the watchdog's opening caused referee violations: {new}")
    # Commands stay refused while the host is silent; then the host comes back.
    host.relay(0)
    open_everything(host, catalog)
    if failures:
        raise CheckFailed("; ".join(failures))


# ---------------------------------------------------------------------------------------
# 3. GC close without authorisation


def check_gc_auth(args, catalog, host, table):
    open_everything(host, catalog)
    refused = catalog.value("RelayFeedback", "RefusedReason", "AuthNotAccepted")
    since = host.mark()
    sequence = host.relay(1, gc=1)
    acked = host.wait(
        "RelayFeedback", 1, lambda s: s["AckSequence"] == sequence, time.monotonic() + 1.0, since, "slot 1 ack"
    )
    # Watch a while longer than the 30 ms contactor operate time: the GC must stay open.
    watch_until = acked.arrival + 0.3
    with host.changed:
        while time.monotonic() < watch_until:
            host.changed.wait(timeout=max(0.0, watch_until - time.monotonic()))
    frames = [f for f in host.frames_between("RelayFeedback", 1, since, host.mark()) if f.arrival >= acked.arrival]
    reasons = sorted({catalog.label("RelayFeedback", "RefusedReason", f.signals["RefusedReason"]) for f in frames})
    gc = sorted({f.signals["GcFeedback"] for f in frames})
    gc_fault = sorted({f.signals["GcFault"] for f in frames})
    print(
        f"  gc-auth: {len(frames)} RelayFeedback frames of slot 1 after the ack:"
        f" RefusedReason {reasons}, GcFeedback {gc}, GcFault {gc_fault}"
    )
    table.append(("gc-auth: RefusedReason / GcFeedback", f"{','.join(reasons)} / {gc}", "AuthNotAccepted / [0]"))
    host.relay(1)
    open_everything(host, catalog)
    if any(f.signals["RefusedReason"] != refused for f in frames):
        raise CheckFailed(f"slot 1 GC close without auth: RefusedReason {reasons}, expected AuthNotAccepted")
    if any(f.signals["GcFeedback"] != 0 for f in frames):
        raise CheckFailed(f"slot 1 GC closed without auth: GcFeedback {gc}")


# ---------------------------------------------------------------------------------------
# 4. unsafe tie


def check_unsafe_tie(args, catalog, host, table):
    if not args.control:
        raise CheckFailed("--control ADDR is needed to read the referee")
    open_everything(host, catalog)
    host.module(0, True, 400.0, 10.0)
    host.module(2, True, 300.0, 10.0)
    since = host.mark()
    host.relay(0, mc=1)
    host.relay(1, mc=1)
    deadline = time.monotonic() + 3.0
    near = lambda volts: lambda s: s["McFeedback"] & 1 and abs(s["BusVoltage"] - volts) < 2.0  # noqa: E731
    at_400 = host.wait("RelayFeedback", 0, near(400.0), deadline, since, "segment 0 bus at 400 V")
    at_300 = host.wait("RelayFeedback", 1, near(300.0), deadline, since, "segment 1 bus at 300 V")
    print(f"  unsafe-tie: buses at {at_400.signals['BusVoltage']:.1f} V and {at_300.signals['BusVoltage']:.1f} V")
    before = len(control_get(args, "/violations"))
    commanded = time.monotonic()
    host.relay(0, mc=1, mn=1)
    deadline = commanded + 2.0
    found = None
    while found is None:
        for violation in control_get(args, "/violations")[before:]:
            if violation.get("invariant") == "S3" and violation.get("subject") == "tie 0-1":
                found = violation
                break
        if found is None:
            if time.monotonic() >= deadline:
                raise CheckFailed("no S3 violation for tie 0-1 within 2 s of closing it across 100 V")
            host.stop.wait(0.05)  # poll the referee at 20 Hz until the deadline
    caught_ms = (time.monotonic() - commanded) * 1000
    match = re.search(r"([0-9]+(?:\.[0-9]+)?) V", found.get("detail", ""))
    across = float(match.group(1)) if match else float("nan")
    print(f"  unsafe-tie: referee caught it within {caught_ms:.0f} ms: {found}")
    table.append(("unsafe-tie: S3 tie 0-1", f"across {across:.1f} V", "~100 V"))
    # Opening a tie that carries current is itself unsafe: clean up as an emergency.
    open_everything(host, catalog, emergency=True)
    if not 90.0 <= across <= 110.0:
        raise CheckFailed(f"S3 violation does not report ~100 V: {found}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control", help="HOST:PORT of the simulator's control API")
    parser.add_argument("--config", default=str(DEMO.resolve()))
    parser.add_argument("--dbc", default=str(DBC.resolve()))
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--only", action="append", choices=CHECKS, help="run only these checks")
    args = parser.parse_args()

    catalog = Catalog(args.dbc)
    buses = devices(args.config)
    selected = args.only or list(CHECKS)
    table = []
    results = []

    def run(name, check, *extra):
        print(f"[{name}]")
        started = time.monotonic()
        try:
            check(args, catalog, *extra, table)
            results.append((name, None, time.monotonic() - started))
        except CheckFailed as failure:
            results.append((name, str(failure), time.monotonic() - started))
        except Exception as error:  # noqa: BLE001 - a crash is a failure of this check only
            traceback.print_exc()
            results.append((name, f"crashed: {error!r}", time.monotonic() - started))

    if "heartbeats" in selected:
        run("heartbeats", check_heartbeats, buses)
    host_checks = [(n, c) for n, c in (("watchdog", check_watchdog), ("gc-auth", check_gc_auth),
                                        ("unsafe-tie", check_unsafe_tie)) if n in selected]
    if host_checks:
        try:
            host = Host(catalog, args.host, args.port, HOST_CABINET, HOST_SLOTS)
        except Exception as error:  # noqa: BLE001
            for name, _ in host_checks:
                results.append((name, f"cannot open {HOST_CABINET}: {error!r}", 0.0))
        else:
            try:
                for name, check in host_checks:
                    run(name, check, host)
                if host.errors:
                    results.append(("host receiver", "; ".join(host.errors[:5]), 0.0))
            finally:
                host.close()

    print()
    width = max((len(r[0]) for r in table), default=10)
    print(f"{'measured':<{width}}  {'value':<28}  expected")
    for row, value, expected in table:
        print(f"{row:<{width}}  {value:<28}  {expected}")
    print()
    for name, failure, seconds in results:
        print(f"{'FAIL' if failure else 'ok  '} {name} ({seconds:.1f} s)")
    failures = [(n, f) for n, f, _ in results if f]
    for name, failure in failures:
        print(f"FAIL {name}: {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"python-can/cantools cross-check of ringhub-sim: {len(results)} checks OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
