#!/bin/sh
# anvil from npm, started the way opML needs it (installed into .venv/bin by `make`):
# - drops --steps-tracing, which ape-foundry always passes (it makes anvil ~100x slower and lets
#   its memory grow without bound);
# - lifts the 24 KiB contract-size limit (EIP-170), as the py-evm test provider does.
here=$(dirname "$(readlink -f "$0")")
anvil="$here/../../node_modules/.bin/anvil"
for arg do
  shift
  [ "$arg" = "--steps-tracing" ] && continue
  set -- "$@" "$arg"
done
exec "$anvil" --disable-code-size-limit "$@"
