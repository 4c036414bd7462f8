"""Where everything of a project lives, and which stage writes what.

`Layout(root)` names every path of a project rooted at `root` (the folder holding `params.yaml`
and `dvc.yaml`): `dvc repro` runs stages with root `.`, `workflow.run_all` with any folder. The
outputs each stage declares (`STAGE_OUTPUTS`) are the `outs`/`metrics` of `dvc.yaml` (a test
checks). The folder names the CLI relies on come from the serving contract (`recli.contract`),
which the pipeline depends on and never the other way round.

A running stage gets a *staged* layout (`Layout.staged`): the same names, except that its own
declared outputs point into its staging folder. Everything the stage writes and reads back of
its own goes there, explicitly, and `writes` puts the set in place when the stage returns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.core import io
from pipeline.core.config import PARAMS_FILE
from recli import contract


@dataclass(frozen=True)
class Layout:
    """Every path of a project rooted at `root`."""

    root: Path = Path(".")
    staging: tuple[tuple[Path, Path], ...] = ()
    """(declared output, where this run writes it) pairs of the running stage; empty otherwise."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def staged(self, staging: list[tuple[Path, Path]]) -> Layout:
        """This layout with the running stage's outputs moved to their staging places."""
        pairs = tuple((Path(os.path.abspath(out)), Path(to)) for out, to in staging)
        return replace(self, staging=pairs)

    def absolute(self) -> Layout:
        """This layout with every path absolute: for workers that start in other folders."""
        staging = tuple((out, Path(os.path.abspath(to))) for out, to in self.staging)
        return replace(self, root=Path(os.path.abspath(self.root)), staging=staging)

    @property
    def final(self) -> Layout:
        """Where the outputs are once committed (this layout without staging)."""
        return replace(self, staging=())

    def placed(self, path: Path) -> Path:
        """`path`, or its staged copy when it is (inside) one of the running stage's outputs."""
        if not self.staging:
            return path
        absolute = Path(os.path.abspath(path))
        for output, staged in self.staging:
            if absolute == output or output in absolute.parents:
                return staged / absolute.relative_to(output)
        return path

    # inputs
    @property
    def params(self) -> Path:
        return self.root / PARAMS_FILE

    # stage output folders (`recli.contract` names them)
    @property
    def artifacts(self) -> Path:
        return self.root / contract.DEFAULT_ARTIFACTS

    @property
    def processed(self) -> Path:
        return self.placed(self.artifacts / contract.PROCESSED_DIR)

    @property
    def finetune(self) -> Path:
        return self.placed(self.artifacts / contract.FINETUNE_DIR)

    @property
    def encoder(self) -> Path:
        """The fine-tuned encoder (inside `finetune`), what `recli search` loads."""
        return self.placed(self.artifacts / contract.ENCODER_DIR)

    @property
    def embed(self) -> Path:
        return self.placed(self.artifacts / contract.EMBED_DIR)

    @property
    def cluster(self) -> Path:
        return self.placed(self.artifacts / contract.CLUSTER_DIR)

    @property
    def interests(self) -> Path:
        return self.placed(self.artifacts / "interests")

    @property
    def factorize(self) -> Path:
        return self.placed(self.artifacts / contract.FACTORIZE_DIR)

    @property
    def sequence(self) -> Path:
        return self.placed(self.artifacts / contract.SEQUENCE_DIR)

    @property
    def fuse(self) -> Path:
        """The fused vectors and the settings chosen with them (`recli` never reads them)."""
        return self.placed(self.artifacts / "fuse")

    @property
    def export(self) -> Path:
        """Every user's top k (`pipeline.export`)."""
        return self.placed(self.artifacts / "export")

    @property
    def index(self) -> Path:
        return self.placed(self.artifacts / contract.INDEX_DIR)

    # metrics and plot data (tracked by git, not the DVC cache)
    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    def metrics_file(self, name: str) -> Path:
        """`metrics/<name>.json`."""
        return self.placed(self.metrics / f"{name}.json")

    @property
    def evaluation(self) -> Path:
        """The evaluate stage's table, where `recli metrics` reads it."""
        return self.placed(self.root / contract.METRICS_FILE)

    def plot_file(self, name: str) -> Path:
        """`metrics/plots/<name>.json`."""
        return self.placed(self.metrics / "plots" / f"{name}.json")


def stage_outputs(layout: Layout) -> dict[str, list[Path]]:
    """What each stage writes (its DVC `outs` and `metrics`), as paths under `layout.root`."""
    return {
        "preprocess": [layout.processed, layout.metrics_file("preprocess")],
        "finetune": [
            layout.finetune,
            layout.plot_file("finetune_loss"),
            layout.plot_file("finetune_validation"),
            layout.metrics_file("finetune"),
        ],
        "embed": [layout.embed],
        "cluster": [
            layout.cluster,
            layout.plot_file("cluster_sizes"),
            layout.metrics_file("cluster"),
        ],
        "interests": [layout.interests, layout.metrics_file("interests")],
        "factorize": [layout.factorize],
        "sequence": [
            layout.sequence,
            layout.plot_file("sequence_validation"),
            layout.metrics_file("sequence"),
        ],
        "fuse": [layout.fuse, layout.metrics_file("fuse")],
        "index": [layout.index, layout.metrics_file("index")],
        "evaluate": [
            layout.plot_file("ndcg_by_activity"),
            layout.plot_file("ndcg_by_cluster"),
            layout.plot_file("accuracy_diversity"),
            layout.evaluation,
            layout.metrics_file("evaluation_by_cluster"),
        ],
        "export": [layout.export],
    }


STAGE_OUTPUTS = {
    stage: [path.as_posix() for path in paths] for stage, paths in stage_outputs(Layout()).items()
}
"""`stage_outputs` of a project run from its own root, as `dvc.yaml` spells them."""


def writes(stage: str) -> Callable[[Callable[[Layout], None]], Callable[[Path], None]]:
    """Make a stage's `main(layout)` into `main(root)` that replaces its outputs as a set.

    `main` is given the project's layout staged for `stage`: everything it writes to its
    declared outputs lands in its staging folder, and `io.stage_outputs` puts the set in place
    only when `main` returns; a failed or interrupted run leaves every earlier output as it was.
    """

    def decorate(main: Callable[[Layout], None]) -> Callable[[Path], None]:
        def run(root: Path = Path(".")) -> None:
            layout = Layout(root)
            with io.stage_outputs(layout.artifacts, stage, stage_outputs(layout)[stage]) as run:
                main(layout.staged(run.staging))

        run.__name__, run.__qualname__, run.__doc__ = main.__name__, main.__qualname__, main.__doc__
        run.__module__ = main.__module__
        return run

    return decorate
