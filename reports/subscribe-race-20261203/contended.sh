#!/bin/bash
# usage: [GAP_US=N] contended.sh APUS-BINARY OUT.json — run.sh while two busy shell loops compete
# with the broker and the client for the two cores (a shard then often wakes late)
busy=()
for i in 1 2; do (while :; do :; done) & busy+=($!); done
bash reports/subscribe-race-20261203/run.sh "$@"
kill "${busy[@]}"
