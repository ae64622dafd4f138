#!/usr/bin/env bash
# The device side under Python 3.6 without torch, as on JetPack 4.6 (Jetson Nano).
exec bash "$(dirname "$0")/test_device_side.sh" 3.6 "$@"
