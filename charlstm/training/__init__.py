"""One training run, on disk and across devices.

`run` (what a run is, its directory), `run_lock` (one process trains a run
at a time), `session` (opening a run, new, resumed or fine-tuned, and
training it for one session), `reading` (its text read, and what is said
of it), `loop` (the loop around the compiled step,
which yields `events`), `step_setup` (what a session trains with, and its
compiled step), `setup_notes` (what a session is told of that setup),
`timefit` (the schedule fitted to a time limit), `health` (warnings worth
a user's attention), `checkpoint` (Orbax, never pickled),
`checkpoint_meta` (the JSON a checkpoint carries), `checkpoint_paths`
(which step directory a path given means), `restore_failures` (what
an unreadable checkpoint says), `runlog` (metrics.jsonl and samples.txt),
`catalog` (listing runs), `distributed` (the device mesh a run is split
over), `processes` (the processes of a multi-host run: joining, leaving,
agreeing), `tune` (a hyperparameter search, one run per trial)
and `search_space` (what it searches).
"""
