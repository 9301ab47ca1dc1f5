#!/usr/bin/env bash
# Compares idemhttp's overhead per request with a peer middleware's, in one
# run on this machine: each suite's bare handler, first execution and
# replay, interleaved ROUNDS times. The peer is built beside the
# repository, in a temporary directory; none of its code comes in.
#
#   scripts/peer-http-bench.sh            # repenguin22/idemlease's httpidem, from GitHub
#   PEER_SRC=/path/to/clone ROUNDS=5 scripts/peer-http-bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
src=${PEER_SRC:-https://github.com/repenguin22/idemlease}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git clone -q "$src" "$tmp/idemlease"
echo "peer: repenguin22/idemlease $(git -C "$tmp/idemlease" rev-parse --short HEAD)"
go test -c -o "$tmp/idem.test" ./idemhttp
(cd "$tmp/idemlease" && go test -c -o "$tmp/peer.test" ./httpidem)
for r in $(seq "$rounds"); do
  "$tmp/idem.test" -test.run '^$' -test.bench 'Middleware' -test.benchmem | grep '^Benchmark' | sed 's/^/idem  /'
  "$tmp/peer.test" -test.run '^$' -test.bench 'HandlerBaseline|FirstExecution|Replay$' -test.benchmem | grep '^Benchmark' | sed 's/^/peer  /'
done
