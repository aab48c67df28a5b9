-- A broker that asks Liftwatch to check logins (EMQX with `liftwatch broker-hook`, issue #17)
-- needs the hash here; Mosquitto keeps its own in its password file. Logins provisioned before
-- this migration have none and are refused by the hook until rotated (`liftwatch devices
-- provision NAME` again). Format: sha256$<salt hex>$<digest hex> (liftwatch/devices.py).
ALTER TABLE device_credentials ADD COLUMN secret_hash text;
