#!/usr/bin/env bash
# Runs examples/afas against the Profit stand-in: starts it with a synthetic tenant of 100
# people, applies (directory accounts, e-mail and UPN written back), applies again (nothing to do:
# no call to Profit beyond the reads), shows the audit log's write-back entries, stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p koppel -p koppel-hr-fixture
work=$(mktemp -d)
./target/debug/koppel-hr-fixture afas --listen 127.0.0.1:8701 --persons 100 --today 2026-11-23 &
fixture=$!
trap 'kill $fixture; rm -rf "$work"' EXIT
sleep 1
export AFAS_TOKEN=7748B1A4B5AF4A899588017DD71E55CBB60F8C504E2C16A17D1F9D9F42914C7C
koppel() { ./target/debug/koppel "$@" --config examples/afas/koppel.toml --store "$work/koppel.db" --now 2026-11-23; }
./target/debug/koppel validate --config examples/afas/koppel.toml
koppel apply
koppel apply
koppel audit --target profit | tail -5
curl -s http://127.0.0.1:8701/_fixture/stats; echo
