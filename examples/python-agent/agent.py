#!/usr/bin/env python3
"""A meshnode agent in Python using only the standard library.

It talks to the local node over its Unix socket with Connect's JSON protocol
(HTTP/1.1): unary calls are a POST of JSON; the Serve stream is a POST whose
response is a sequence of frames (1 flag byte, 4-byte big-endian length,
JSON). Payloads are bytes, so they travel base64-encoded (proto3 JSON).

    python3 agent.py --name py-echo --capability demo.echo      # serve
    python3 agent.py --call demo.echo --data '"hello"'          # call once
    python3 agent.py --name py-voter --vote approve --max-amount 100  # also vote

The socket comes from --socket, else $MESHNODE_SOCKET, else the node's
default path. Copy this file and vote.py: serving and calling need nothing
but the standard library; voting (--vote, vote.py) needs the `cryptography`
package for ed25519 (apt-get install python3-cryptography).
"""

import argparse
import base64
import concurrent.futures
import datetime
import http.client
import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

import vote

SOCKET_ENV = "MESHNODE_SOCKET"

# Connect stream frame flags.
FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02
# Refuse frames larger than this: the node's messages are at most 16 MiB.
MAX_FRAME = 16 << 20

# gRPC status codes used here (CallError.code is a number).
CODE_UNKNOWN = 2
CODE_DEADLINE_EXCEEDED = 4

# Connect error codes after which retrying cannot help: the node understood
# the request and refused it.
PERMANENT = {"invalid_argument", "permission_denied", "already_exists",
             "unauthenticated", "unimplemented", "out_of_range"}


def default_socket():
    """Mirror agent.DefaultSocket in the Go SDK."""
    if os.environ.get(SOCKET_ENV):
        return os.environ[SOCKET_ENV]
    if os.geteuid() == 0:
        return "/var/lib/meshnode/meshnode.sock"
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "meshnode", "meshnode.sock")


# --- Connect framing -------------------------------------------------------

class FrameError(Exception):
    """The stream is not valid Connect framing."""


def encode_frame(payload, flags=0):
    """One Connect stream frame: flags, big-endian length, payload."""
    return struct.pack(">BI", flags, len(payload)) + payload


def _read_exact(read, n):
    """Read exactly n bytes with read(k); None on a clean EOF before any
    byte, FrameError on EOF in the middle."""
    chunks, got = [], 0
    while got < n:
        chunk = read(n - got)
        if not chunk:
            if got == 0:
                return None
            raise FrameError("stream ended inside a frame (%d of %d bytes)" % (got, n))
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frames(read, max_frame=MAX_FRAME):
    """Yield (flags, payload) for each frame read with read(n).

    Stops after the end-of-stream frame or at a clean EOF between frames.
    Raises FrameError for a truncated frame, an oversized one, or a
    compressed one (this client never asks for compression).
    """
    while True:
        header = _read_exact(read, 5)
        if header is None:
            return
        flags, length = struct.unpack(">BI", header)
        if flags & FLAG_COMPRESSED:
            raise FrameError("compressed frame, but no compression was negotiated")
        if length > max_frame:
            raise FrameError("frame of %d bytes exceeds the %d-byte limit" % (length, max_frame))
        payload = _read_exact(read, length) if length else b""
        if payload is None:
            raise FrameError("stream ended before a %d-byte frame body" % length)
        yield flags, payload
        if flags & FLAG_END_STREAM:
            return


class ConnectError(Exception):
    """An error from the node: code is Connect's name ("not_found", ...)."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message

    @property
    def permanent(self):
        return self.code in PERMANENT


def messages(frames):
    """Decode a server stream's frames into JSON messages; raise the error
    carried by the end-of-stream frame, if any."""
    for flags, payload in frames:
        if flags & FLAG_END_STREAM:
            end = json.loads(payload or b"{}")
            err = end.get("error")
            if err:
                raise ConnectError(err.get("code", "unknown"), err.get("message", ""))
            return
        yield json.loads(payload)
    raise ConnectError("unavailable", "stream ended without an end-of-stream frame")


# --- Transport ---------------------------------------------------------------

class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a Unix socket instead of TCP."""

    def __init__(self, path, timeout=None):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class Client:
    """Connect JSON client for the node's agent API."""

    def __init__(self, path):
        self.path = path

    def unary(self, method, request, timeout=30.0):
        conn = UnixHTTPConnection(self.path, timeout=timeout + 5)
        try:
            conn.request("POST", "/meshnode.v1." + method, json.dumps(request).encode(), {
                "Content-Type": "application/json",
                "Connect-Protocol-Version": "1",
                "Connect-Timeout-Ms": str(int(timeout * 1000)),
            })
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise _error_from_body(resp.status, body)
        return json.loads(body or b"{}")

    def stream(self, method, request):
        """Open a server stream; yields its messages. No timeout: the
        stream lives as long as the node keeps it open."""
        conn = UnixHTTPConnection(self.path)
        try:
            conn.request("POST", "/meshnode.v1." + method, encode_frame(json.dumps(request).encode()), {
                "Content-Type": "application/connect+json",
                "Connect-Protocol-Version": "1",
            })
            resp = conn.getresponse()
            if resp.status != 200:
                raise _error_from_body(resp.status, resp.read())
            yield from messages(read_frames(resp.read))
        finally:
            conn.close()


def _error_from_body(http_status, body):
    try:
        err = json.loads(body)
        return ConnectError(err.get("code", "unknown"), err.get("message", ""))
    except ValueError:
        return ConnectError("unknown", "HTTP %d: %r" % (http_status, body[:200]))


def field(msg, camel, snake):
    """proto3 JSON may use lowerCamelCase or the proto field name."""
    return msg.get(camel, msg.get(snake))


def parse_time(s):
    """RFC 3339 timestamp (proto3 JSON) to a POSIX time, or None."""
    if not s:
        return None
    s = s.replace("Z", "+00:00")
    if "." in s:  # Python's fromisoformat wants at most 6 fraction digits
        head, _, rest = s.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        s = head + "." + digits[:6].ljust(6, "0") + rest[len(digits):]
    return datetime.datetime.fromisoformat(s).timestamp()


# --- The agent ---------------------------------------------------------------

class Agent:
    """Registers, serves one capability, reconnects when the node restarts."""

    def __init__(self, client, name, capability, max_in_flight=16, log=None, voter=None):
        self.client = client
        self.voter = voter  # a Voter, or None: this agent does not vote
        self.name = name
        self.capability = capability
        self.max_in_flight = max_in_flight
        self.log = log or (lambda msg: print("agent.py:", msg, file=sys.stderr, flush=True))
        self.agent_id = name
        self.node = ""
        self.cancelled = set()
        self.lock = threading.Lock()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=max_in_flight)

    def handle(self, payload, content_type):
        """The capability: echo the input upper-cased and say who answered."""
        try:
            text = json.loads(payload)
            if not isinstance(text, str):
                text = json.dumps(text)
        except ValueError:
            text = payload.decode("utf-8", "replace")
        answer = {"echo": text.upper(), "agent": self.agent_id, "node": self.node, "lang": "python"}
        return json.dumps(answer, separators=(",", ":")).encode(), "application/json"

    def register(self):
        req = {
            "name": self.name,
            "capabilities": [{"name": self.capability, "proficiency": "PROFICIENCY_EXPERIENCED"}],
        }
        if self.voter:
            req["roles"] = ["voter"]
            req["votePublicKey"] = vote.public_key_b64(self.voter.key)
        resp = self.client.unary("RegistryService/Register", req)
        agent = resp.get("agent") or {}
        self.agent_id = agent.get("id") or self.name
        self.node = agent.get("node", "")

    def serve_once(self):
        """One session: register, open Serve, handle events until it ends.
        Returns True if the node confirmed the stream."""
        self.register()
        ready = False
        for event in self.client.stream("InvokeService/Serve", {
                "agentId": self.agent_id, "maxInFlight": self.max_in_flight}):
            if event.get("ready"):
                ready = True
                self.log("ready as %s on node %s" % (self.agent_id, self.node))
            elif event.get("call"):
                self.pool.submit(self.run, event["call"])
            elif event.get("cancel"):
                with self.lock:
                    self.cancelled.add(field(event["cancel"], "callId", "call_id"))
            elif event.get("vote") and self.voter:
                self.pool.submit(self.cast, event["vote"])
            # A vote request to an agent without a key cannot happen: the
            # node asks only agents that registered one.
        return ready

    def serve_forever(self, stop):
        failures = 0
        while not stop.is_set():
            try:
                if self.serve_once():
                    failures = 0
                err = "the node closed the serve stream"
            except ConnectError as e:
                if e.permanent:
                    raise
                err = str(e)
            except (OSError, http.client.HTTPException, FrameError, ValueError) as e:
                err = "%s: %s" % (type(e).__name__, e)
            if stop.is_set():
                break
            failures += 1
            delay = min(0.1 * 2 ** (failures - 1), 5.0) * random.uniform(0.8, 1.2)
            self.log("meshnode connection lost (%s); reconnecting, attempt %d in %.2fs" % (err, failures, delay))
            stop.wait(delay)

    def run(self, call):
        call_id = field(call, "callId", "call_id")
        deadline = parse_time(call.get("deadline"))
        try:
            if deadline is not None and time.time() >= deadline:
                result = {"error": {"code": CODE_DEADLINE_EXCEEDED, "message": "arrived after its deadline"}}
            else:
                payload = base64.b64decode(call.get("payload") or "")
                out, content_type = self.handle(payload, field(call, "contentType", "content_type") or "")
                result = {"ok": {"payload": base64.b64encode(out).decode(), "contentType": content_type}}
        except Exception as e:  # the handler's failure is the caller's error
            result = {"error": {"code": CODE_UNKNOWN, "message": "%s: %s" % (type(e).__name__, e)}}
        with self.lock:
            if call_id in self.cancelled:
                self.cancelled.discard(call_id)
                return  # the caller gave up; nobody waits for the answer
        try:
            self.client.unary("InvokeService/Respond", dict(agentId=self.agent_id, callId=call_id, **result))
        except (ConnectError, OSError, http.client.HTTPException) as e:
            self.log("could not deliver the answer to call %s: %s" % (call_id, e))

    def cast(self, ask):
        """Answer a vote request with this agent's one signed vote on the
        proposal (journalled before it is sent)."""
        proposal = ask.get("proposal") or {}
        pid = proposal.get("id", "")
        voter = self.voter

        def sign():
            choice, reason = vote.decide(proposal, voter.choice, voter.max_amount)
            return vote.new_vote(field(ask, "clusterId", "cluster_id") or "", proposal, choice, reason,
                                 self.agent_id, self.node, voter.key)
        try:
            v = voter.journal.vote_once(pid, sign)
        except Exception as e:  # the pool would swallow it: say why no vote went out
            self.log("casting no vote on %s: %s: %s" % (pid, type(e).__name__, e))
            return
        try:
            self.client.unary("QuorumService/Vote", {"requestId": field(ask, "requestId", "request_id"), "vote": v})
        except (ConnectError, OSError, http.client.HTTPException) as e:
            self.log("could not deliver the vote on %s: %s" % (pid, e))

    def deregister(self):
        try:
            self.client.unary("RegistryService/Deregister", {"agentId": self.agent_id}, timeout=2)
        except (ConnectError, OSError, http.client.HTTPException) as e:
            self.log("deregister: %s" % e)


def read_data(data):
    if data == "-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        with open(data[1:], "rb") as f:
            return f.read()
    return data.encode()


def call(client, capability, data, timeout):
    deadline = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=timeout)
    resp = client.unary("InvokeService/Call", {
        "capability": capability,
        "payload": base64.b64encode(read_data(data)).decode(),
        "contentType": "application/json",
        "deadline": deadline.isoformat().replace("+00:00", "Z"),
    }, timeout=timeout)
    print("answered by %s on node %s" % (field(resp, "agentId", "agent_id"), resp.get("node")), file=sys.stderr)
    sys.stdout.buffer.write(base64.b64decode(resp.get("payload") or "") + b"\n")
    sys.stdout.flush()


class Voter:
    """What an agent needs to vote: its key, its journal and its rule."""

    def __init__(self, state, choice="approve", max_amount=None):
        self.key = vote.load_or_create_key(os.path.join(state, "vote.key"))
        self.journal = vote.Journal(os.path.join(state, "votes"))
        self.choice = choice
        self.max_amount = max_amount


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", default=None, help="node socket (default $MESHNODE_SOCKET or the node's default)")
    p.add_argument("--name", default="py-echo", help="agent name on its node")
    p.add_argument("--capability", default="demo.echo", help="capability to serve")
    p.add_argument("--max-in-flight", type=int, default=16, help="calls handled at once")
    p.add_argument("--call", metavar="CAP", help="call this capability once instead of serving")
    p.add_argument("--data", default="null", help="payload for --call: JSON, @file, or - for stdin")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline for --call, seconds")
    p.add_argument("--vote", nargs="?", const="approve", choices=("approve", "reject"),
                   help="vote in quorum decisions: approve (the default) or reject every proposal")
    p.add_argument("--max-amount", type=float, metavar="N",
                   help="with --vote: reject a JSON payload whose \"amount\" exceeds N")
    p.add_argument("--state-dir", help="vote key and journal (default: the Go SDK's, "
                   "$XDG_STATE_HOME/meshnode/agents/NAME-SOCKETHASH)")
    args = p.parse_args(argv)
    socket_path = args.socket or default_socket()
    client = Client(socket_path)
    voter = None
    if args.vote and not args.call:
        try:
            voter = Voter(args.state_dir or vote.state_dir(args.name, socket_path), args.vote, args.max_amount)
        except (vote.VoteError, OSError) as e:
            print("agent.py: --vote: %s" % e, file=sys.stderr)
            return 2
    elif args.max_amount is not None:
        p.error("--max-amount needs --vote")
    try:
        if args.call:
            call(client, args.call, args.data, args.timeout)
            return 0
        agent = Agent(client, args.name, args.capability, args.max_in_flight, voter=voter)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C
        try:
            agent.serve_forever(stop)
        except KeyboardInterrupt:
            stop.set()
        agent.pool.shutdown(wait=True)
        agent.deregister()
        return 0
    except ConnectError as e:
        print("agent.py: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("agent.py: cannot reach meshnode at %s: %s: start one with `meshnode run`, or set %s"
              % (client.path, e, SOCKET_ENV), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
