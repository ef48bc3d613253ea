#!/usr/bin/env bash
# `npm run bench -- [options]`: builds, then runs dist/bench/run.js with the options. `--help` (or
# `-h`) prints the usage at once from the last build, without building first (33 s on a small VM);
# only when there is no build yet does it build.
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
  if [[ "$arg" == "--help" || "$arg" == "-h" ]] && [[ -f dist/bench/run.js ]]; then exec node dist/bench/run.js --help; fi
done
npm run --silent build
exec node dist/bench/run.js "$@"
