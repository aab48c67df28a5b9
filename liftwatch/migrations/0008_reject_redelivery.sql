-- A rejected message that the broker delivers again (DUP set: the ingestor committed the
-- reject but died before its PUBACK) is recorded once: the ingestor looks for the same topic
-- and payload before inserting such a redelivery. Rejects are rare, so this index is small;
-- a device that publishes the same bad payload twice is still recorded twice (no DUP then).
CREATE INDEX rejected_messages_sha256 ON rejected_messages (payload_sha256);
