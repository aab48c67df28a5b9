"""MQTT -> TimescaleDB ingestor: lossless (ack after commit), batched COPY, loud about bad input."""
