"""The one door to ClearML: a run's task and offline session (:mod:`.tracker`), what needs a
server (:mod:`.server`: templates, clones, queues, reading tasks back), what a task carries to an
agent (:mod:`.agent`) and sharing a run recorded offline (:mod:`.share`). No module outside this
package imports clearml."""
