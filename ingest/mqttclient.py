"""A paho client with a lean receive path for the ingestor's hot loop.

Profiling (docs/performance.md) showed most of the network thread's time in paho's generic
MQTT v5 PUBLISH handling: a `Properties` object decoded and an `MQTTMessage` built for every
message, topic-filter matching of callbacks, one socket wake-up per PUBACK, and on the read
side one select() and three recv() calls per packet (paho reads the fixed header a byte at a
time). The ingestor needs none of that: it takes (topic bytes, payload, packet id, qos) and
acknowledges whole batches. This subclass overrides paho's private `_handle_publish` for QoS
0/1 (QoS 2 keeps paho's own handling), reads the socket in large chunks and parses every
complete packet in the buffer before going back to select(), and adds `ack_many`, which
queues every PUBACK of a batch as one write.
The paho version is pinned below 3 in pyproject.toml; the ingest tests exercise this path.
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

Sink = Callable[[bytes, bytes, int, int, float], None]  # topic, payload, packet id, qos, receipt time


class IngestClient(mqtt.Client):
    """paho Client whose QoS 0/1 PUBLISH packets go straight to `sink`."""

    sink: Sink | None = None
    _rbuf: bytes = b""
    _rpos: int = 0

    # --- buffered reads -----------------------------------------------------------------------

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(RECV_CHUNK)
            if len(data) <= bufsize:
                return data  # also the empty read that means the connection is gone
            self._rbuf, self._rpos = data, 0
        out = self._rbuf[self._rpos:self._rpos + bufsize]
        self._rpos += len(out)
        return out

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf) and self._sock is not None:
            rc = self._packet_read()  # packets already in our buffer: select() would not see them
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if rc > 0:
                return self._loop_rc_handle(rc)
        return rc

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0  # bytes of a dead connection must not leak into the next
        super()._sock_close()

    def _handle_publish(self) -> MQTTErrorCode:
        cmd = self._in_packet["command"]
        qos = (cmd & 0x06) >> 1
        if self.sink is None or qos == 2 or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        tlen = (packet[0] << 8) | packet[1]
        pos = 2 + tlen
        topic = bytes(packet[2:pos])
        mid = 0
        if qos:
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        # skip the properties: a variable byte integer length, then that many bytes
        plen = shift = 0
        while True:
            b = packet[pos]
            pos += 1
            plen |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        self.sink(topic, bytes(packet[pos + plen:]), mid, qos, time.time())
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_many(self, mids: list[int]) -> None:
        """Queue the PUBACKs of a batch as one write (in the order given)."""
        if mids:
            blob = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
            self._packet_queue(PUBACK, blob, 0, 0)
