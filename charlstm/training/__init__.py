"""One training run, on disk and across devices.

`run` (what a run is, its directory), `session` (opening a run, new or
resumed, and training it for one session), `loop` (the loop around the
compiled step, which yields `events`), `checkpoint` (Orbax, never pickled),
`runlog` (metrics.jsonl and samples.txt), `catalog` (listing runs),
`distributed` (the device mesh and the processes of a multi-device run) and
`tune` (a hyperparameter search, one run per trial).
"""
