#!/usr/bin/env python3
"""Cross-checks ringhub's CAN codec against cantools, an independent DBC implementation.

For every message of proto/can/ringhub.dbc, with random valid signal values:
  1. cantools encodes them; `ringhub can dump` decodes the frames (as a candump log) and
     must report the same message, id, address and values;
  2. `ringhub can encode` encodes them and must produce the same bytes as cantools;
  3. cantools (non-strict) encodes values the DBC forbids (beyond [min|max], outside a
     value table); `ringhub can dump` must reject each frame, naming message and signal.

usage: cross_check.py --ringhub PATH [--samples N] [--seed S]
"""

import argparse
import json
import math
import pathlib
import random
import subprocess
import sys
import tempfile

import cantools

DBC = pathlib.Path(__file__).resolve().parents[2] / "can" / "ringhub.dbc"
ADDRESS_BITS = "RingHubAddressBits"


def address_bits(message):
    return message.dbc.attributes[ADDRESS_BITS].value


def raw_range(signal):
    """The raw values the DBC allows for a signal without a value table."""
    width_lo = -(1 << (signal.length - 1)) if signal.is_signed else 0
    width_hi = (1 << (signal.length - 1)) - 1 if signal.is_signed else (1 << signal.length) - 1
    lo = math.ceil((signal.minimum - signal.offset) / signal.scale - 1e-9)
    hi = math.floor((signal.maximum - signal.offset) / signal.scale + 1e-9)
    return max(lo, width_lo), min(hi, width_hi), width_lo, width_hi


def physical(signal, raw):
    value = raw * signal.scale + signal.offset
    if float(signal.scale).is_integer() and float(signal.offset).is_integer():
        return int(value)
    return value


def pick_raw(signal, rng):
    lo, hi, _, _ = raw_range(signal)
    roll = rng.random()
    if roll < 0.1:
        return lo
    if roll < 0.2:
        return hi
    return rng.randint(lo, hi)


def random_values(message, rng):
    """Valid values for every signal present under a randomly chosen multiplexer value."""
    values = {}
    mux_value = None
    muxed = [s for s in message.signals if s.multiplexer_ids]
    if muxed:
        mux_value = rng.choice(sorted({m for s in muxed for m in s.multiplexer_ids}))
    for signal in message.signals:
        if signal.multiplexer_ids and mux_value not in signal.multiplexer_ids:
            continue
        if signal.is_multiplexer:
            values[signal.name] = str(signal.choices[mux_value]) if signal.choices else mux_value
        elif signal.choices:
            values[signal.name] = str(signal.choices[rng.choice(sorted(signal.choices))])
        else:
            values[signal.name] = physical(signal, pick_raw(signal, rng))
    if message.name == "RfidRead":
        # A UID's bytes past its length are zero (the typed codec rejects anything else).
        length = values["UidLength"]
        values["UidLow"] &= (1 << (8 * min(length, 4))) - 1
        values["UidHigh"] &= (1 << (8 * max(length - 4, 0))) - 1
    return values


def frame_id(message, address):
    return message.frame_id | address


def candump_id(message, address):
    ident = frame_id(message, address)
    return f"{ident:08X}" if message.is_extended_frame else f"{ident:03X}"


def close(expected, actual, signal):
    if isinstance(expected, str):
        return expected == actual
    return isinstance(actual, (int, float)) and abs(actual - expected) <= abs(signal.scale) * 1e-6 + 1e-9


def dump(ringhub, lines):
    with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as log:
        log.write("".join(f"({1700000000 + i}.000000) cab-x {line}\n" for i, line in enumerate(lines)))
        path = log.name
    try:
        run = subprocess.run([ringhub, "can", "dump", f"candump:{path}"], capture_output=True, text=True, timeout=120)
    finally:
        pathlib.Path(path).unlink()
    return [json.loads(line) for line in run.stdout.splitlines()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ringhub", required=True, help="path to the ringhub binary")
    parser.add_argument("--samples", type=int, default=60, help="random frames per message")
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    db = cantools.database.load_file(str(DBC), strict=True)
    failures = []

    # 1. cantools encodes, ringhub decodes.
    cases = []
    for message in db.messages:
        for _ in range(args.samples):
            address = rng.randrange(1 << address_bits(message))
            values = random_values(message, rng)
            data = message.encode(values, scaling=True, strict=True)
            cases.append((message, address, values, data))
    lines = [f"{candump_id(m, a)}#{d.hex().upper()}" for m, a, _, d in cases]
    decoded = dump(args.ringhub, lines)
    if len(decoded) != len(cases):
        failures.append(f"dump printed {len(decoded)} lines for {len(cases)} frames")
    for (message, address, values, _), line, got in zip(cases, lines, decoded):
        want = {"message": message.name, "id": frame_id(message, address), "address": address}
        if "error" in got or any(got.get(k) != v for k, v in want.items()):
            failures.append(f"decode {line}: expected {want}, got {got}")
            continue
        if set(got["signals"]) != set(values):
            failures.append(f"decode {line}: signals {sorted(got['signals'])}, expected {sorted(values)}")
            continue
        for name, expected in values.items():
            if not close(expected, got["signals"][name], message.get_signal_by_name(name)):
                failures.append(f"decode {line}: {message.name}.{name} = {got['signals'][name]!r}, expected {expected!r}")

    # 2. ringhub encodes, cantools agrees on every byte.
    for message, address, values, data in cases[:: max(1, args.samples // 8)]:
        argv = [args.ringhub, "can", "encode", message.name, "--address", str(address)]
        argv += [f"{name}={value!r}" if isinstance(value, float) else f"{name}={value}" for name, value in values.items()]
        run = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        expected = f"{candump_id(message, address)}#{data.hex().upper()}"
        if run.returncode != 0 or run.stdout.strip() != expected:
            failures.append(f"encode {message.name} {values}: got {run.stdout.strip()!r} {run.stderr.strip()!r}, expected {expected}")

    # 3. Values the DBC forbids are rejected, naming message and signal.
    bad_cases = []
    for message in db.messages:
        for signal in message.signals:
            if signal.multiplexer_ids and signal.is_multiplexer:
                continue
            base = random_values(message, rng)
            if signal.name not in base:
                continue
            if signal.choices:
                reserved = [r for r in range(1 << signal.length) if r not in signal.choices]
                if not reserved:
                    continue
                bad_raw = reserved[0]
            else:
                lo, hi, width_lo, width_hi = raw_range(signal)
                if hi < width_hi:
                    bad_raw = hi + 1
                elif lo > width_lo:
                    bad_raw = lo - 1
                else:
                    continue
            if signal.is_multiplexer:
                continue
            bad = dict(base, **{signal.name: bad_raw * signal.scale + signal.offset})
            data = message.encode(bad, scaling=True, strict=False)
            bad_cases.append((message, signal, f"{candump_id(message, 0)}#{data.hex().upper()}"))
    for (message, signal, line), got in zip(bad_cases, dump(args.ringhub, [c[2] for c in bad_cases])):
        if f"{message.name}.{signal.name}" not in got.get("error", ""):
            failures.append(f"reject {line}: expected an error naming {message.name}.{signal.name}, got {got}")

    checked = len(cases)
    print(f"cantools cross-check: {checked} frames decoded, {len(cases[:: max(1, args.samples // 8)])} encoded, "
          f"{len(bad_cases)} invalid frames rejected, {len(db.messages)} messages")
    for failure in failures[:40]:
        print("FAIL", failure, file=sys.stderr)
    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
