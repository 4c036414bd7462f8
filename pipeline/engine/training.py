"""Data-parallel training on a Ray cluster: Ray Train's `TorchTrainer` around a stage's own loop.

Every worker runs the stage's training function with its rank and the number of workers (Ray
Train sets up the process group: gloo on CPUs, NCCL on GPUs); the function reads its inputs and
writes its outputs itself, at the absolute paths it is given, which every node must see (shared
storage). Ray Train keeps its own run records under `storage`, which the caller removes.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.engine.runner import Engine, call, import_ray, importable
from recli.errors import RecliError

LOOP_KEY = "_loop"
"""Where the config carries the stage's loop, as a module and a name to import."""


def _train_loop(config: dict[str, Any]) -> None:
    """On each worker: the stage's loop, imported by name (`pipeline.engine.runner.importable`)."""
    target = config[LOOP_KEY]
    call(target, {key: value for key, value in config.items() if key != LOOP_KEY})


def train(
    engine: Engine, loop: Callable[[dict[str, Any]], None], config: dict[str, Any], storage: Path
) -> int:
    """Run `loop(config)` on `engine.workers()` workers (each one CPU and
    `engine.gpus_per_worker` GPUs); returns how many. A worker's failure is one error line.
    Ray Train's own records go under `storage`, removed afterwards."""
    import_ray()
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    workers, gpus = engine.workers(), engine.cfg.gpus_per_worker
    resources = {"CPU": 1.0, **({"GPU": gpus} if gpus else {})}
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={**config, LOOP_KEY: importable(loop)},
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=gpus > 0, resources_per_worker=resources
        ),
        run_config=RunConfig(name="train", storage_path=str(Path(storage).absolute())),
    )
    try:
        trainer.fit()
    except Exception as error:  # Ray wraps whatever the workers raised
        cause = error.__cause__ or error
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1]
        raise RecliError(f"training on the Ray cluster failed: {first}") from None
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return workers


def weights_digest(model: Any) -> str:
    """sha256 over every weight of a torch module, in order: equal on workers holding equal
    weights (what a data-parallel run's workers must end with)."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()
