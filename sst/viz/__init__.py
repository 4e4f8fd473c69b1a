"""What people look at: a run's figures (confusion matrices, learning curve, per class, by
length, reliability, confident errors) and the leaderboard page, drawn from files the kit wrote.
The split's own plots are drawn with it (:mod:`sst.data.stats`), inside its versioned folder."""
