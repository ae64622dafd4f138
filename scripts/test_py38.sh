#!/usr/bin/env bash
# The device side under Python 3.8 without torch, as on JetPack 5.
exec bash "$(dirname "$0")/test_device_side.sh" 3.8 "$@"
