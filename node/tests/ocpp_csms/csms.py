"""A test CSMS for ringhub's OCPP 1.6J charge points, built on the `ocpp` package.

The package's v16 ChargePoint validates every CALL it receives, and every answer it
sends, against the OCA JSON schemas of OCPP 1.6, so it is an independent judge of what
ringhub puts on the wire.

    csms.py PORT [--accept TAG ...] [--password PASSWORD] [--tls CERT_PEM KEY_PEM]
            [--sample-interval SECONDS] [--refuse-at-start TAG ...]
            [--first-transaction-id N]

- listens on 127.0.0.1:PORT (0 picks a free port) and prints `{"listening": PORT}`;
- requires the WebSocket subprotocol ocpp1.6; the charge point identity is the last
  path segment of the URL;
- with --tls, serves wss:// with that certificate chain and key (security profile 2);
- with --password, requires HTTP Basic auth `identity:PASSWORD` (security profiles 1
  and 2) and answers 401 otherwise;
- with --sample-interval, sets MeterValueSampleInterval by ChangeConfiguration after
  every BootNotification and logs `{"event": "configured", "cp", "key", "status"}`;
- with --refuse-at-start, answers StartTransaction for those tags with Invalid even
  when Authorize accepted them (a card blocked between the two);
- answers BootNotification (Accepted, interval 300), Heartbeat, StatusNotification,
  Authorize (Accepted for the --accept tags, Invalid for others), StartTransaction
  (transaction ids N, N+1, … from --first-transaction-id, default 1, each logged as
  `{"event": "transaction", "cp", "transactionId", "idTag"}`), StopTransaction and
  MeterValues;
- reads commands from stdin, one a line, and sends each as a CALL to every connected
  charge point:
    remote_stop TXID                              RemoteStopTransaction
    change_availability CONNECTOR Operative|Inoperative
    remote_start CONNECTOR|- TAG                  RemoteStartTransaction (- : no connector)
    reset Soft|Hard                               Reset
    unlock CONNECTOR                              UnlockConnector
    send_local_list VERSION Full|Differential [TAG=STATUS|TAG=- ...]   SendLocalList
    get_local_list_version                        GetLocalListVersion
    clear_cache                                   ClearCache
    change_configuration KEY VALUE                ChangeConfiguration
    get_configuration [KEY ...]                   GetConfiguration
    trigger MESSAGE [CONNECTOR]                   TriggerMessage
  the answer, schema-checked by the `ocpp` package, is logged as `{"event": "response",
  "cp", "action", "request", "status", "result"}` (`status` null and `error` set when the
  call failed; `result` is the whole answer); an unknown command is logged as
  `{"event": "bad_command", "line"}`;
- prints one JSON line per event on stdout, each with `t`, the receive time in Unix
  seconds: `{"event": "connected", ...}`, `{"event": "received", "cp", "type", "id",
  "action", "payload", "valid", "error"}` (`valid` is the schema check of a CALL, null
  for a CALLRESULT/CALLERROR) and `{"event": "disconnected", ...}`.
"""

import argparse
import asyncio
import base64
import dataclasses
import http
import itertools
import json
import logging
import ssl
import sys
import time
from datetime import datetime, timezone

import websockets
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, unpack, validate_payload
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.datatypes import AuthorizationData, IdTagInfo
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    AvailabilityType,
    MessageTrigger,
    RegistrationStatus,
    ResetType,
    UpdateType,
)

SUBPROTOCOL = "ocpp1.6"


def log(event, **fields):
    """One JSON line on stdout, stamped with the time it was written."""
    print(json.dumps({"t": time.time(), "event": event, **fields}), flush=True)


def now():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class Csms(ChargePoint):
    """One charge point's session: logs every message, then lets `ocpp` route it."""

    def __init__(
        self, identity, connection, accepted_tags, transaction_ids, sample_interval, refused_at_start
    ):
        super().__init__(identity, connection)
        self.refused_at_start = refused_at_start
        self.accepted_tags = accepted_tags
        self.transaction_ids = transaction_ids
        self.sample_interval = sample_interval
        self.tasks = set()

    async def route_message(self, raw_msg):
        received = time.time()
        entry = {"t": received, "event": "received", "cp": self.id, "raw": raw_msg}
        try:
            msg = unpack(raw_msg)
        except OCPPError as e:
            entry.update(valid=False, error=repr(e))
        else:
            entry.update(type=msg.message_type_id, id=msg.unique_id, valid=None, error=None)
            if isinstance(msg, Call):
                entry.update(action=msg.action, payload=msg.payload)
                try:
                    await validate_payload(msg, self._ocpp_version)
                    entry["valid"] = True
                except OCPPError as e:
                    entry.update(valid=False, error=repr(e))
        print(json.dumps(entry), flush=True)
        await super().route_message(raw_msg)

    def id_tag_info(self, id_tag):
        accepted = id_tag in self.accepted_tags
        status = AuthorizationStatus.accepted if accepted else AuthorizationStatus.invalid
        return IdTagInfo(status=status)

    @on(Action.boot_notification)
    def on_boot_notification(self, **_):
        return call_result.BootNotification(
            current_time=now(), interval=300, status=RegistrationStatus.accepted
        )

    @after(Action.boot_notification)
    def after_boot_notification(self, **_):
        # A task: awaiting the call here would block the loop that reads its answer.
        if self.sample_interval is not None:
            task = asyncio.create_task(self.set_sample_interval())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def set_sample_interval(self):
        key = "MeterValueSampleInterval"
        result = await self.call(
            call.ChangeConfiguration(key=key, value=str(self.sample_interval))
        )
        log("configured", cp=self.id, key=key, status=str(result.status))

    @on(Action.heartbeat)
    def on_heartbeat(self):
        return call_result.Heartbeat(current_time=now())

    @on(Action.status_notification)
    def on_status_notification(self, **_):
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag):
        return call_result.Authorize(id_tag_info=self.id_tag_info(id_tag))

    @on(Action.start_transaction)
    def on_start_transaction(self, id_tag, **_):
        transaction_id = next(self.transaction_ids)
        log("transaction", cp=self.id, transactionId=transaction_id, idTag=id_tag)
        id_tag_info = self.id_tag_info(id_tag)
        if id_tag in self.refused_at_start:
            id_tag_info = IdTagInfo(status=AuthorizationStatus.invalid)
        return call_result.StartTransaction(transaction_id=transaction_id, id_tag_info=id_tag_info)

    @on(Action.stop_transaction)
    def on_stop_transaction(self, **_):
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter_values(self, **_):
        return call_result.MeterValues()


def local_list_entry(word):
    """`TAG=STATUS` as AuthorizationData; `TAG=-` (no idTagInfo) removes TAG."""
    tag, status = word.split("=", 1)
    if status == "-":
        return AuthorizationData(id_tag=tag)
    return AuthorizationData(id_tag=tag, id_tag_info=IdTagInfo(status=AuthorizationStatus(status)))


def parse_command(line):
    """The CALL a stdin command line asks for, or None."""
    words = line.split()
    if not words:
        return None
    name, args = words[0], words[1:]
    try:
        if name == "remote_stop" and len(args) == 1:
            return call.RemoteStopTransaction(transaction_id=int(args[0]))
        if name == "change_availability" and len(args) == 2:
            return call.ChangeAvailability(
                connector_id=int(args[0]), type=AvailabilityType(args[1])
            )
        if name == "remote_start" and len(args) == 2:
            connector = None if args[0] == "-" else int(args[0])
            return call.RemoteStartTransaction(id_tag=args[1], connector_id=connector)
        if name == "reset" and len(args) == 1:
            return call.Reset(type=ResetType(args[0]))
        if name == "unlock" and len(args) == 1:
            return call.UnlockConnector(connector_id=int(args[0]))
        if name == "send_local_list" and len(args) >= 2:
            return call.SendLocalList(
                list_version=int(args[0]),
                update_type=UpdateType(args[1]),
                local_authorization_list=[local_list_entry(w) for w in args[2:]],
            )
        if name == "get_local_list_version" and not args:
            return call.GetLocalListVersion()
        if name == "clear_cache" and not args:
            return call.ClearCache()
        if name == "change_configuration" and len(args) == 2:
            return call.ChangeConfiguration(key=args[0], value=args[1])
        if name == "get_configuration":
            return call.GetConfiguration(key=args or None)
        if name == "trigger" and len(args) in (1, 2):
            connector = int(args[1]) if len(args) == 2 else None
            return call.TriggerMessage(
                requested_message=MessageTrigger(args[0]), connector_id=connector
            )
    except ValueError:
        return None
    return None


async def send_command(session, request):
    """Sends one CALL to a charge point and logs its answer."""
    action = type(request).__name__
    fields = {"cp": session.id, "action": action, "request": dataclasses.asdict(request)}
    try:
        result = await session.call(request)
    except Exception as e:  # a CALLERROR, a timeout or a schema failure: logged
        log("response", status=None, error=repr(e), **fields)
    else:
        status = getattr(result, "status", None)
        log(
            "response",
            status=None if status is None else str(status),
            result=dataclasses.asdict(result),
            error=None,
            **fields,
        )


async def read_commands(sessions):
    """Serves the stdin commands (see the module docs) until stdin closes."""
    tasks = set()
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        if not line.strip():
            continue
        request = parse_command(line)
        if request is None:
            log("bad_command", line=line.rstrip("\n"))
            continue
        for session in list(sessions.values()):
            task = asyncio.create_task(send_command(session, request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)


def basic_auth_check(password):
    """A websockets `process_request` hook that answers 401 unless the request carries
    Basic auth `identity:password` for the identity in its path."""

    def check(connection, request):
        identity = request.path.rstrip("/").rsplit("/", 1)[-1]
        expected = base64.b64encode(f"{identity}:{password}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            log("unauthorized", cp=identity)
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "bad credentials\n")
        return None

    return check


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--accept", nargs="*", default=[], help="idTags to accept")
    parser.add_argument("--password", help="require HTTP Basic auth with this password")
    parser.add_argument("--sample-interval", type=int, help="MeterValueSampleInterval to set")
    parser.add_argument(
        "--refuse-at-start", nargs="*", default=[], help="idTags to refuse at StartTransaction"
    )
    parser.add_argument("--tls", nargs=2, metavar=("CERT_PEM", "KEY_PEM"), help="serve wss://")
    parser.add_argument(
        "--first-transaction-id", type=int, default=1, help="the first transactionId given"
    )
    args = parser.parse_args()

    accepted_tags = set(args.accept)
    transaction_ids = itertools.count(args.first_transaction_id)
    # The connected charge points, by identity, for the stdin commands.
    sessions = {}

    async def session(connection):
        # websockets refuses (HTTP 400) a client that does not offer ocpp1.6.
        identity = connection.request.path.rstrip("/").rsplit("/", 1)[-1]
        log("connected", cp=identity, subprotocol=connection.subprotocol)
        csms = Csms(
            identity,
            connection,
            accepted_tags,
            transaction_ids,
            args.sample_interval,
            set(args.refuse_at_start),
        )
        sessions[identity] = csms
        try:
            await csms.start()
        except websockets.ConnectionClosed as closed:
            log("disconnected", cp=identity, reason=str(closed))
        finally:
            if sessions.get(identity) is csms:
                del sessions[identity]

    tls = None
    if args.tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(*args.tls)

    server = await websockets.serve(
        session,
        "127.0.0.1",
        args.port,
        subprotocols=[SUBPROTOCOL],
        process_request=basic_auth_check(args.password) if args.password else None,
        ssl=tls,
    )
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"listening": port}), flush=True)
    commands = asyncio.create_task(read_commands(sessions))
    await server.serve_forever()


if __name__ == "__main__":
    # The ocpp package logs every message at INFO; our JSON lines on stdout replace it.
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
