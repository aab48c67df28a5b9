#!/usr/bin/env bash
# Make sure the machine's PostgreSQL cluster and Mosquitto broker are running (used by
# `make demo`; the tests start throwaway servers of their own). Idempotent.
set -euo pipefail

if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters --no-header | while read -r ver name port status _; do
        if [ "$status" != "online" ]; then
            echo "starting PostgreSQL cluster $ver/$name"
            pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start
        fi
    done
fi

if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
    echo "starting Mosquitto on 127.0.0.1:1883"
    mosquitto -d -c /etc/mosquitto/mosquitto.conf
fi
