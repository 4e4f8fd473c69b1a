"""The verbs of the `sst` command, each a thin module over the packages below: the training
recipe (:mod:`.train`, with :mod:`.pseudo`) and the split it needs (:mod:`.prepare`), which other
verbs share; predict, sweep, report, replay/verify, ensemble, export, doctor. No verb imports
another verb but those recipes."""
