"""ZeroMQ bus: typed publishers and subscribers for the wire messages in ``edge.messages``.

Frames are ``[topic, json]``. The publisher stamps the per-topic ``seq`` and the clocks at the
moment of sending, so latency measured from ``mono_ns`` includes serialisation.

Inbound traffic is untrusted (a nav unit, a planner on another box). A message that is not two
frames, names an unknown topic, is oversized, is not JSON, has another schema version or fails
validation is counted per kind, logged once per kind, and dropped; the socket keeps working.

Two size guards: ``max_message_bytes`` is the contract's limit (counted as ``oversized``);
libzmq's MAXMSGSIZE is set to a multiple of it as a hard memory guard: past that libzmq drops
the offending connection itself (the peer reconnects; nothing reaches us to count).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pydantic
import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from edge.errors import EdgeError
from edge.messages import ACCEPTED_SCHEMA_VERSIONS, MESSAGE_TYPES, SCHEMA_VERSION, WireMessage

log = logging.getLogger(__name__)
M = TypeVar("M", bound=WireMessage)

HARD_LIMIT_FACTOR = 4
# The envelope fields every wire message starts with; the publisher writes them itself (below).
_STAMP_FIELDS = {"schema_version", "seq", "mono_ns", "wall_ns"}
CURVE_DOMAIN = "*"


class BusError(EdgeError, RuntimeError):
    pass


@dataclass(frozen=True)
class CurveKeys:
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, secret_file: str | Path) -> CurveKeys:
        """Load a ``*.key_secret`` certificate made by ``edge keys``."""
        path = Path(secret_file)
        if not path.is_file():
            raise BusError(f"CURVE key file {path} does not exist (make one with `edge keys`)")
        public, secret = zmq.auth.load_certificate(str(path))
        if secret is None:
            raise BusError(f"{path} holds no secret key; pass the *.key_secret file")
        return cls(public, secret)


def load_public_key(public_file: str | Path) -> bytes:
    path = Path(public_file)
    if not path.is_file():
        raise BusError(f"CURVE public key file {path} does not exist")
    public, _ = zmq.auth.load_certificate(str(path))
    return public


def make_keypair(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``NAME.key`` (public, share it) and ``NAME.key_secret`` (keep it) into out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(out), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


class CurveServer:
    """A ZAP authenticator that admits only clients whose public keys are in a folder.

    One per context: every CURVE server socket of that context is guarded by it."""

    def __init__(self, context: zmq.Context, authorized_clients_dir: str | Path):
        folder = Path(authorized_clients_dir)
        if not folder.is_dir():
            raise BusError(f"authorized clients folder {folder} does not exist")
        self._auth = ThreadAuthenticator(context)
        self._auth.start()
        self._auth.configure_curve(domain=CURVE_DOMAIN, location=str(folder))

    def stop(self) -> None:
        self._auth.stop()


def _make_curve_server(sock: zmq.Socket, keys: CurveKeys) -> None:
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True


def _make_curve_client(sock: zmq.Socket, keys: CurveKeys, server_public: bytes) -> None:
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = server_public


@dataclass
class SeqTracker:
    """Per-topic sequence bookkeeping: gaps are lost messages, a step back is a restart."""

    last: dict[str, int] = field(default_factory=dict)
    lost: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)

    def observe(self, topic: str, seq: int) -> int:
        """Record seq; return how many messages were missed just before it."""
        previous = self.last.get(topic)
        self.last[topic] = seq
        if previous is None:
            return 0
        if seq <= previous:
            self.restarts[topic] += 1
            return 0
        missed = seq - previous - 1
        self.lost[topic] += missed
        return missed


class _BusSocket:
    """A socket with the bus's common set-up: options, optional CURVE, bind or connect."""

    def __init__(
        self,
        kind: int,
        endpoint: str,
        *,
        context: zmq.Context | None,
        bind: bool,
        options: Mapping[int, int],
        curve_keys: CurveKeys | None,
        curve_server_public: bytes | None,
    ):
        self._context = context or zmq.Context.instance()
        self._sock = self._context.socket(kind)
        self._sock.setsockopt(zmq.LINGER, 0)
        for option, value in options.items():
            self._sock.setsockopt(option, value)
        if curve_keys is not None:
            if bind:
                _make_curve_server(self._sock, curve_keys)
            elif curve_server_public is None:
                raise BusError("a connecting CURVE socket needs the server's public key")
            else:
                _make_curve_client(self._sock, curve_keys, curve_server_public)
        try:
            (self._sock.bind if bind else self._sock.connect)(endpoint)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            raise BusError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from None
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Publisher(_BusSocket):
    """Publishes wire messages. Binds by default (the runtime is the stable end).

    An XPUB socket (plain SUB sockets connect to it as to a PUB) with ZMQ_XPUB_NODROP, so a send
    that would overflow some subscriber's queue (the send high-water mark) is refused instead of
    silently dropped: that is how the runtime learns that a subscriber stopped reading. The message
    is then sent again in lossy mode (libzmq reads the flag at each send), which delivers it to every
    subscriber with room and drops it for the full one, as a PUB socket would; the refusal is counted
    in ``undelivered``. Nothing ever blocks: a stalled subscriber cannot hold up the others.

    ``kernel_buffer_bytes`` also bounds the OS socket buffer (SO_SNDBUF): messages queued in the
    kernel are out of the high-water mark's reach, so a link that should drop stale messages rather
    than deliver them late bounds both. None keeps the OS default."""

    def __init__(
        self,
        endpoint: str,
        *,
        context: zmq.Context | None = None,
        bind: bool = True,
        send_hwm: int = 100,
        kernel_buffer_bytes: int | None = None,
        curve_keys: CurveKeys | None = None,
        curve_server_public: bytes | None = None,
    ):
        options: dict[int, int] = {zmq.SNDHWM: send_hwm, zmq.XPUB_NODROP: 1}
        if kernel_buffer_bytes is not None:
            options[zmq.SNDBUF] = kernel_buffer_bytes
        super().__init__(
            zmq.XPUB, endpoint, context=context, bind=bind, options=options,
            curve_keys=curve_keys, curve_server_public=curve_server_public,
        )
        self.send_hwm = send_hwm
        self._seq: Counter[str] = Counter()
        # Per topic: sends some subscriber's full queue refused (it got nothing; the others did).
        self.undelivered: Counter[str] = Counter()
        self.last_send_complete = True  # False: the latest send skipped a subscriber whose queue was full

    def publish(self, message: M) -> M:
        """Stamp seq and clocks, serialise and send without blocking. Returns the stamped copy.

        Past a subscriber's high-water mark the message is dropped for that subscriber only (it
        sees the gap in ``seq``), and counted here (``undelivered``, ``last_send_complete``).

        The body is serialised first and the envelope (schema_version, seq, clocks) written in
        front of it just before the send, so ``mono_ns`` is the moment the bytes go to the socket,
        not the moment serialisation started; the stamped copy is made after the send. The bytes
        are exactly ``stamped.model_dump_json()`` (a test holds this)."""
        topic = message.TOPIC
        seq = self._seq[topic]
        self._seq[topic] = seq + 1
        body = message.__pydantic_serializer__.to_json(message, exclude=_STAMP_FIELDS)
        mono_ns, wall_ns = time.monotonic_ns(), time.time_ns()
        envelope = b'{"schema_version":%d,"seq":%d,"mono_ns":%d,"wall_ns":%d' % (
            message.schema_version, seq, mono_ns, wall_ns)
        payload = envelope + (b"," + body[1:] if len(body) > 2 else b"}")
        self._send([topic.encode(), payload], topic)
        return message.model_copy(update={"seq": seq, "mono_ns": mono_ns, "wall_ns": wall_ns})

    def send_raw(self, frames: list[bytes]) -> None:
        """Send arbitrary frames (tests and fault injection only)."""
        self._send(frames, frames[0].decode(errors="replace") if frames else "")

    def _send(self, frames: list[bytes], topic: str) -> None:
        self._drain_subscriptions()
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
            self.last_send_complete = True
            return
        except zmq.Again:  # a subscriber of this topic has a full queue
            pass
        self.undelivered[topic] += 1
        self.last_send_complete = False
        self._sock.setsockopt(zmq.XPUB_NODROP, 0)  # lossy for this one send: the others get it
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
        finally:
            self._sock.setsockopt(zmq.XPUB_NODROP, 1)

    def _drain_subscriptions(self) -> None:
        """XPUB hands subscribe/unsubscribe messages up; unread, libzmq would keep them forever."""
        while self._sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._sock.recv(zmq.NOBLOCK)


@dataclass(frozen=True)
class Received:
    topic: str
    message: WireMessage
    recv_mono_ns: int
    missed_before: int
    superseded: int = 0  # latest-only mode: how many older messages this one replaced


class Subscriber(_BusSocket):
    """Receives and validates wire messages of the given topics.

    ``latest_only`` gives CONFLATE semantics: each ``receive`` drains what is queued and
    returns the newest message. libzmq's own ZMQ_CONFLATE is not used because it does not
    support multipart messages, and ``[topic, json]`` is multipart. ``kernel_buffer_bytes`` sets
    SO_RCVBUF (see Publisher)."""

    def __init__(
        self,
        endpoint: str,
        topics: Iterable[str],
        *,
        context: zmq.Context | None = None,
        bind: bool = False,
        latest_only: bool = False,
        receive_hwm: int = 100,
        kernel_buffer_bytes: int | None = None,
        max_message_bytes: int = 65_536,
        curve_keys: CurveKeys | None = None,
        curve_server_public: bytes | None = None,
    ):
        self.topics = tuple(topics)
        unknown = [t for t in self.topics if t not in MESSAGE_TYPES]
        if unknown:
            raise BusError(f"unknown topics {unknown}; known: {sorted(MESSAGE_TYPES)}")
        options: dict[int, int] = {zmq.RCVHWM: receive_hwm, zmq.MAXMSGSIZE: max_message_bytes * HARD_LIMIT_FACTOR}
        if kernel_buffer_bytes is not None:
            options[zmq.RCVBUF] = kernel_buffer_bytes
        super().__init__(
            zmq.SUB, endpoint, context=context, bind=bind, options=options,
            curve_keys=curve_keys, curve_server_public=curve_server_public,
        )
        for topic in self.topics:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        self.max_message_bytes = max_message_bytes
        self.latest_only = latest_only
        self.rejected: Counter[str] = Counter()
        # The same counts split by topic where the topic was known (None: refused before that).
        self.rejected_per_topic: Counter[tuple[str | None, str]] = Counter()
        self.received: Counter[str] = Counter()
        self.seq = SeqTracker()
        self._logged_kinds: set[str] = set()
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)

    # -- validation -------------------------------------------------------------------------

    def _reject(self, kind: str, detail: str, topic: str | None = None) -> None:
        self.rejected[kind] += 1
        self.rejected_per_topic[(topic, kind)] += 1
        if kind not in self._logged_kinds:
            self._logged_kinds.add(kind)
            log.warning("dropped inbound message on %s (%s): %s; further ones are only counted",
                        self.endpoint, kind, detail)

    def _decode(self, frames: list[bytes]) -> tuple[str, WireMessage] | None:
        if len(frames) != 2:
            self._reject("malformed", f"expected 2 frames [topic, json], got {len(frames)}")
            return None
        topic_raw, payload = frames
        size = len(topic_raw) + len(payload)
        if size > self.max_message_bytes:
            self._reject("oversized", f"{size} bytes > limit {self.max_message_bytes}")
            return None
        topic = topic_raw.decode("ascii", errors="replace")
        model = MESSAGE_TYPES.get(topic)
        if model is None or topic not in self.topics:
            self._reject("unknown_topic", f"topic {topic[:40]!r}")
            return None
        try:
            message = model.model_validate_json(payload)
        except pydantic.ValidationError as exc:
            self._reject(*self._classify(payload, exc), topic=topic)
            return None
        return topic, message

    @staticmethod
    def _classify(payload: bytes, exc: pydantic.ValidationError) -> tuple[str, str]:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return "bad_json", first["msg"]
        try:
            version = json.loads(payload).get("schema_version")
        except (ValueError, AttributeError):
            version = None
        if version not in ACCEPTED_SCHEMA_VERSIONS:
            return "wrong_schema_version", f"schema_version {version!r}, this side speaks {SCHEMA_VERSION}"
        where = ".".join(str(p) for p in first["loc"])
        return "invalid", f"{where}: {first['msg']}"

    # -- receiving --------------------------------------------------------------------------

    def _recv_valid(self, flags: int) -> tuple[str, WireMessage] | None:
        """One raw message off the socket, validated; None if it was rejected."""
        frames = self._sock.recv_multipart(flags)
        return self._decode(frames)

    def handled(self) -> int:
        """Raw messages taken off the socket so far, valid or rejected."""
        return sum(self.received.values()) + sum(self.rejected.values())

    def receive(self, timeout_ms: float = 0, max_messages: int | None = None) -> Received | None:
        """Wait up to timeout_ms for a valid message. Rejected ones are counted and skipped, at
        most ``max_messages`` raw messages in all (then None), so a flood of bad ones cannot
        hold the caller."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        budget = max_messages
        while True:
            if budget is not None:
                if budget <= 0:
                    return None
                budget -= 1
            remaining_ms = max(0.0, (deadline - time.monotonic()) * 1000.0)
            if not self._poller.poll(int(remaining_ms)):  # what pyzmq does with a float
                return None
            decoded = self._recv_valid(zmq.NOBLOCK)
            missed = self._account(*decoded) if decoded is not None else 0
            superseded = 0
            # Latest-only: drain the queue; older valid messages are superseded, not lost.
            while self.latest_only and self._sock.poll(0, zmq.POLLIN):
                newer = self._recv_valid(zmq.NOBLOCK)
                if newer is not None:
                    superseded += decoded is not None
                    missed += self._account(*newer)
                    decoded = newer
            if decoded is not None:
                topic, message = decoded
                return Received(topic, message, time.monotonic_ns(), missed, superseded)
            if remaining_ms <= 0:
                return None

    def _account(self, topic: str, message: WireMessage) -> int:
        self.received[topic] += 1
        return self.seq.observe(topic, message.seq)
