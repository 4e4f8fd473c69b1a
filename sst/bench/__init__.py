"""`sst bench`: benchmarks, each a ratio against a peer measured in the same run (BENCHMARKS.md).
The harness (:mod:`.harness`), the two training loops timed (:mod:`.loops`, ours built by the
production Trainer builder), the seed search (:mod:`.split`), training (:mod:`.train`) and pruning
(:mod:`.prune`)."""
