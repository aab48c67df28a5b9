"""The pieces of `bench/chaos.py` (the chaos run for the ingestor, see docs/reliability.md).

plan       what to run: units, messages, pacing, the fault schedule
clock      the run's clock and its log lines (seconds since the stream started)
fleet      the simulated devices: one paho MQTT v5 connection per unit, every PUBACK kept
ingestors  the ingestor subprocess(es) under test
faults     kill -9, broker restart, database crash, and the overlapping fault
probe      does a persistent session's subscription survive a broker restart?
audit      drain, then the per-unit, per-seq comparison of the table with what was published
report     versions, the attribution of losses, the printed table
"""
