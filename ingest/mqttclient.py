"""A paho client with a lean receive path for the ingestor's hot loop.

Profiling (docs/performance.md) showed most of the network thread's time in paho's generic
MQTT v5 PUBLISH handling: a `Properties` object decoded and an `MQTTMessage` built for every
message, topic-filter matching of callbacks, one socket wake-up per PUBACK, and on the read
side one select() and three recv() calls per packet (paho reads the fixed header a byte at a
time). The ingestor needs none of that: it takes (topic bytes, payload, packet id) and
acknowledges whole batches.

So this subclass reads the socket in large chunks and decodes every complete QoS 0/1 PUBLISH
packet in the chunk itself, in one tight loop, handing the whole run to `sink` in one call
(one lock round trip in the inbox per chunk, not per message). Everything else (CONNACK,
SUBACK, PINGRESP, DISCONNECT, QoS 2, and the one packet that straddles two reads) goes
through paho's own state machine, which reads from the same buffer via `_sock_recv`.
`ack_many` queues every PUBACK of a batch as one write.
The paho version is pinned below 3 in pyproject.toml; the ingest tests exercise both paths.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

RECV_CHUNK = 256 * 1024  # one recv() serves hundreds of small PUBLISH packets
PUBACK = 0x40
_PUBACK = struct.Struct("!BBH")  # v5 allows the short form: success, no properties (remaining length 2)

# topics, payloads, packet ids (0 = QoS 0, which has none), DUP flags (the broker's own
# redeliveries), receipt time of the read
Sink = Callable[[list[bytes], list[bytes], list[int], list[bool], float], None]


class IngestClient(mqtt.Client):
    """paho Client whose QoS 0/1 PUBLISH packets go straight to `sink`, a read's worth at a time."""

    sink: Sink | None = None
    _rbuf: bytes = b""
    _rpos: int = 0

    # --- buffered reads -----------------------------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        """paho's read primitive, served from our buffer (paho's slow path reads through here)."""
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(RECV_CHUNK)
            if len(data) <= bufsize:
                return data  # also the empty read that means the connection is gone
            self._rbuf, self._rpos = data, 0
        out = self._rbuf[self._rpos:self._rpos + bufsize]
        self._rpos += len(out)
        return out

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if self._sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        fast = self._fast_path()
        if fast and self._in_packet["command"] == 0 and self._rpos >= len(self._rbuf):
            try:
                data = super()._sock_recv(RECV_CHUNK)
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except OSError as err:
                self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
                return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
            if not data:
                return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
            self._rbuf, self._rpos = data, 0
        while True:
            if fast and self._in_packet["command"] == 0:
                if self._rpos < len(self._rbuf) and not self._drain_publishes():
                    self._easy_log(mqtt.MQTT_LOG_ERR, "malformed PUBLISH from the broker; reconnecting")
                    return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_PROTOCOL)
                if self._rpos >= len(self._rbuf):
                    return MQTTErrorCode.MQTT_ERR_SUCCESS  # select() tells us when there is more
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = self._packet_read()  # a packet the fast path does not take, or one split across reads
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if rc > 0:
                return self._loop_rc_handle(rc)
            if self._rpos >= len(self._rbuf) and self._in_packet["command"] == 0:
                return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _fast_path(self) -> bool:
        return self.sink is not None and self._protocol == mqtt.MQTTv5

    def _drain_publishes(self) -> bool:
        """Decode complete QoS 0/1 PUBLISH packets at the read position, stopping at anything
        else; hand them to the sink. False if a packet is malformed."""
        buf, pos, end = self._rbuf, self._rpos, len(self._rbuf)
        topics: list[bytes] = []
        payloads: list[bytes] = []
        mids: list[int] = []
        dups: list[bool] = []
        ok = True
        while pos < end:
            cmd = buf[pos]
            if cmd & 0xF0 != 0x30 or cmd & 0x06 > 2:  # not PUBLISH, or QoS 2 (or the reserved 3)
                break
            # remaining length: a variable byte integer of up to 4 bytes
            p, rlen, shift = pos + 1, 0, 0
            while p < end and p - pos <= 4:
                b = buf[p]
                p += 1
                rlen |= (b & 0x7F) << shift
                if not b & 0x80:
                    break
                shift += 7
            else:
                break  # header incomplete in this read (or malformed): paho's path decides
            stop = p + rlen
            if stop > end:
                break  # the packet continues in the next read: paho's path assembles it
            try:
                tlen = (buf[p] << 8) | buf[p + 1]
                p += 2 + tlen
                topic = buf[p - tlen:p]
                if cmd & 0x06:
                    mid = (buf[p] << 8) | buf[p + 1]
                    p += 2
                else:
                    mid = 0
                if buf[p]:  # the properties: a variable byte integer length, then that many bytes
                    plen, p = _vbi(buf, p)
                    p += plen
                else:
                    p += 1  # no properties: what Mosquitto sends
            except IndexError:
                ok = False
                break
            if p > stop or (cmd & 0x06 and mid == 0):
                ok = False
                break
            topics.append(topic)
            mids.append(mid)
            dups.append(cmd & 0x08 != 0)
            payloads.append(buf[p:stop])
            pos = stop
        self._rpos = pos
        if topics:
            now = time.time()
            with self._msgtime_mutex:
                self._last_bytes_received = time.monotonic()  # paho's keepalive clock (time_func)
            self.sink(topics, payloads, mids, dups, now)
        return ok

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0  # bytes of a dead connection must not leak into the next
        super()._sock_close()

    def _handle_publish(self) -> MQTTErrorCode:
        """paho's slow path, for a PUBLISH that straddled two reads: same hand-off, one message."""
        cmd = self._in_packet["command"]
        qos = (cmd & 0x06) >> 1
        if not self._fast_path() or qos == 2:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        tlen = (packet[0] << 8) | packet[1]
        pos = 2 + tlen
        topic = bytes(packet[2:pos])
        mid = 0
        if qos:
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        plen, pos = _vbi(packet, pos)
        self.sink([topic], [bytes(packet[pos + plen:])], [mid], [cmd & 0x08 != 0], time.time())
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: list[int]) -> None:
        """Queue the PUBACKs of a batch as one write (in the order given)."""
        if mids:
            blob = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
            self._packet_queue(PUBACK, blob, 0, 0)


def _vbi(buf: bytes | bytearray, pos: int) -> tuple[int, int]:
    """An MQTT variable byte integer at `pos`: (value, position after it). IndexError if cut."""
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80 or shift >= 21:
            return value, pos
        shift += 7
