"""Where the per-user work of the stages runs: in the stage's own process, or on a Ray cluster.

- `partitions`: every event, laid out as parquet files partitioned by a hash of the user
  (`data/processed/by_user/`), written by `preprocess` on both backends: a task reads its
  partition and has all of its users' events, with no shuffle.
- `runner`: `Engine`, which runs a function over the partitions (in order, in this process; or
  as Ray tasks) and, on Ray, joins or starts the cluster for the stage.
- `rows`: `.npy` outputs that tasks fill row by row (memory-mapped), so that no process, the
  stage's own included, holds every user's vector.

Ray is imported only when `engine.backend` is `ray`; the local backend never needs it.
"""
