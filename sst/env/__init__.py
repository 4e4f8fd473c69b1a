"""The machine a run executes on: determinism, the one precision decision, the CPU's kernels
(portable ISA), the kit's git state and the hash-pinned locks. Nothing here knows a run folder
or ClearML; the fingerprint (:mod:`sst.run.fingerprint`) records what these report."""
