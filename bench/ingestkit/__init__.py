"""The pieces of bench/ingest.py: CPU accounting, the contenders, the latency runs, the report."""
