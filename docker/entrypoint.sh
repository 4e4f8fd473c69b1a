#!/bin/sh
# The kit image's entrypoint. `docker run sst:cpu train …` runs `sst train …`; a command that is
# a program on PATH (`bash -c …` as clearml-agent starts a task container, `python`, `pytest`,
# `clearml-agent`) runs as given.
if [ "$#" -gt 0 ] && command -v "$1" >/dev/null 2>&1; then
  exec "$@"
fi
exec sst "$@"
