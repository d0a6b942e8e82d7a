#!/usr/bin/env python3
"""Cross-check of ringhub-sim's socketcand server with an independent client: python-can's
`socketcand` interface (DESIGN.md §7, "python-can as a socketcand client").

It starts nothing: give it the socketcand address of a running simulator and the hub
config the simulator runs (the demo hub by default). For every cabinet it opens the
cabinet's bus with python-can, listens for a window of seconds, and asserts that

- every PLC's PlcHeartbeat (DBC `BO_ 416`: 0x1A0 + slot, 11-bit) arrives at its 100 ms
  rate: the count in the window within 70..130 % of window / 100 ms, the mean period
  between the server's timestamps within 90..110 ms, and the mean period between their
  arrivals at the client within 80..120 ms;
- every power module's ModuleStatus (DBC `BO_ 2551185408`: 0x18100000 + address, 29-bit)
  arrives at least once.

It prints what it measured, per bus and per device, and exits 1 on any failure.

    python check_sim.py --port 29536 [--host 127.0.0.1] [--config deploy/hubs/demo.toml]
"""

import argparse
import pathlib
import statistics
import sys
import threading
import time
import tomllib

import can

PLC_HEARTBEAT_ID = 0x1A0
MODULE_STATUS_ID = 0x18100000
HEARTBEAT_PERIOD_S = 0.100

DEMO = pathlib.Path(__file__).resolve().parents[3] / "deploy" / "hubs" / "demo.toml"


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


def listen(host, port, cabinet, seconds, out):
    """Records (arbitration id, extended, server timestamp, arrival) of every frame for
    `seconds`."""
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
                frames.append(
                    (message.arbitration_id, message.is_extended_id, message.timestamp, time.monotonic())
                )
    finally:
        bus.shutdown()
    out[cabinet] = frames


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", default=str(DEMO))
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()

    buses = devices(args.config)
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
        print(f"{cabinet}: {len(frames)} frames in {args.seconds:.1f} s")
        for slot in sorted(slots):
            beats = [(t, at) for (i, ext, t, at) in frames if i == PLC_HEARTBEAT_ID + slot and not ext]
            stamps = [t for (t, _) in beats]
            periods_ms = [(b - a) * 1000 for a, b in zip(stamps, stamps[1:])]
            mean = statistics.mean(periods_ms) if periods_ms else float("nan")
            arrivals_ms = [(b - a) * 1000 for (_, a), (_, b) in zip(beats, beats[1:])]
            arrival_mean = statistics.mean(arrivals_ms) if arrivals_ms else float("nan")
            spread = (
                f"{min(periods_ms):.1f}..{max(periods_ms):.1f}" if periods_ms else "-"
            )
            print(
                f"  PLC slot {slot}: PlcHeartbeat 0x{PLC_HEARTBEAT_ID + slot:03X} x{len(stamps)}"
                f" (expected {expected:.0f}), period mean {mean:.1f} ms, range {spread} ms;"
                f" arrival period mean {arrival_mean:.1f} ms"
            )
            if not low <= len(stamps) <= high:
                failures.append(
                    f"{cabinet} slot {slot}: {len(stamps)} heartbeats in {args.seconds} s,"
                    f" expected {low:.0f}..{high:.0f}"
                )
            if not periods_ms or not 90.0 <= mean <= 110.0:
                failures.append(f"{cabinet} slot {slot}: mean heartbeat period {mean:.1f} ms")
            if not arrivals_ms or not 80.0 <= arrival_mean <= 120.0:
                failures.append(
                    f"{cabinet} slot {slot}: heartbeats arrive every {arrival_mean:.1f} ms on average"
                )
        for address in sorted(modules):
            count = sum(1 for (i, ext, _, _) in frames if i == MODULE_STATUS_ID + address and ext)
            rate = count / args.seconds
            print(
                f"  module {address}: ModuleStatus 0x{MODULE_STATUS_ID + address:08X}"
                f" x{count} ({rate:.1f}/s)"
            )
            if count == 0:
                failures.append(f"{cabinet} module {address}: no ModuleStatus frame")

    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    if failures:
        return 1
    print(f"python-can socketcand cross-check: {len(buses)} buses OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
