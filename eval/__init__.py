"""ARR-COC public check set: question-conditioned scenes built from photographs packages ship offline.

Modules:
    sources.py   the offline photographs (scikit-image's bundled files, the bundled sample scene) and
                 rendered signs, and the object library the scenes are composed from
    scenes.py    ``CheckSetConfig`` and ``build_checkset``: seeded scenes, each object in known grid
                 cells, one question per object (plus a small, separately reported spatial subset)
    metrics.py   hit@top, target token share, question sensitivity and their exact chance levels
    runner.py    runs the model (deterministic / Thompson modes) and the allocator's baselines
    report.py    the metrics table per policy, budget and subset (``CheckSetResult``)
    bundled.py   the scripted check of the bundled sample scene
    checkset.py  the command line: ``python -m eval.checkset --budget 640 1024 --out eval/results/checkset.json``

Nothing here downloads anything or reads outside the installed packages; images are built, never
shipped. The package is named ``eval``: it shadows no standard-library module, and only a module
that does ``import eval`` rebinds the builtin name there (``from eval.x import y`` does not).
"""
__all__ = ["sources", "scenes", "metrics", "runner", "report", "bundled", "checkset"]
