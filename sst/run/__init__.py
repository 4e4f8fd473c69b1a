"""A run: its folder's contract and reader (:mod:`.folder`), its fingerprint (:mod:`.fingerprint`:
the one schema of what a run depended on and what a difference means on replay), the one
Lightning Trainer that fits and scores it (:mod:`.trainer`), and how finished runs rank
(:mod:`.ranking`)."""
