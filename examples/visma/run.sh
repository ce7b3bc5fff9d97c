#!/usr/bin/env bash
# Runs examples/visma against the Youforce stand-in: starts it with a synthetic tenant of 100
# people, applies (directory accounts, identities written back), applies again (nothing to do:
# no call to Youforce beyond the reads), shows the audit log's write-back entries, stops it.
# About two minutes: the stand-in enforces Youforce's 100 calls a minute, and the first run
# reads and writes each of the ~90 identities (a GET and a PATCH).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p koppel -p koppel-hr-fixture
work=$(mktemp -d)
./target/debug/koppel-hr-fixture visma --listen 127.0.0.1:8700 --persons 100 --today 2026-11-23 &
fixture=$!
trap 'kill $fixture; rm -rf "$work"' EXIT
sleep 1
export VISMA_CLIENT_SECRET=fixture-secret
koppel() { ./target/debug/koppel "$@" --config examples/visma/koppel.toml --store "$work/koppel.db" --now 2026-11-23; }
./target/debug/koppel validate --config examples/visma/koppel.toml
koppel apply
koppel apply
koppel audit --target youforce | tail -5
curl -s http://127.0.0.1:8700/_fixture/stats; echo
