"""Prometheus metrics of one ingestor (own registry, so several can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        p = "liftwatch_ingest_"
        self.received = Counter(p + "messages_received", "MQTT messages taken from the broker", registry=r)
        self.acked = Counter(p + "messages_acked", "messages acknowledged after their batch committed", registry=r)
        self.rows = Counter(p + "rows_written", "rows inserted", ["table"], registry=r)
        self.duplicates = Counter(p + "duplicate_rows", "rows already stored (redelivery or repeat publish)", registry=r)
        self.rejected = Counter(p + "rejected", "messages refused, by reason", ["reason"], registry=r)
        self.gaps = Counter(p + "seq_gaps", "seq gaps recorded", registry=r)
        self.entrapments = Counter(p + "entrapment_alerts", "entrapment alerts raised from the ingest path", registry=r)
        self.db_errors = Counter(p + "db_errors", "failed batch attempts (retried)", registry=r)
        self.batch_size = Histogram(p + "batch_size", "messages per committed batch",
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000), registry=r)
        self.commit_seconds = Histogram(p + "commit_seconds", "time to write and commit one batch",
                                        buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5), registry=r)
        lag_buckets = (.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 60, 300)
        self.lag_seconds = Histogram(p + "publish_to_commit_seconds",
                                     "device ts to commit, per accepted message (includes clock skew and backlog)",
                                     buckets=lag_buckets, registry=r)
        self.receive_lag_seconds = Histogram(p + "receive_to_commit_seconds", "receipt from the broker to commit",
                                             buckets=lag_buckets, registry=r)
        self.queue_depth = Gauge(p + "queue_depth", "messages waiting for the writer", registry=r)
        self.connected = Gauge(p + "broker_connected", "1 while connected to the broker", registry=r)
