"""A tiny training run for ``accelerate launch`` (tests/training/test_distributed.py).

python -m accelerate.commands.launch ... tests/training/launch_run.py OUT_DIR NUM_STEPS BATCH [STOP_AT]
writes OUT_DIR/result.json on the main process: the history and the final trainable weights' sums."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from tests.training.conftest import scene_dataset, tiny_model  # noqa: E402
from arrcoc.training import TrainConfig, train  # noqa: E402


def main(out: str, steps: int, batch: int, stop_at: int = 0, resume: str = "") -> None:
    torch.set_num_threads(1)
    model = tiny_model()
    data = scene_dataset(48)
    cfg = TrainConfig(output_dir=out, num_steps=steps, per_device_batch_size=batch, deterministic=True,
                      progress=False, seed=3, resume_from=resume or None)
    stop = [lambda rec: rec["step"] == stop_at] if stop_at else None
    res = train(cfg, model, None, data, callbacks=stop)
    import accelerate
    state = accelerate.PartialState()
    if state.is_main_process:
        weights = {n: p.detach().double().sum().item() for n, p in model.named_parameters() if p.requires_grad}
        Path(out, "result.json").write_text(json.dumps({
            "history": res.history, "processes": state.num_processes, "weights": weights,
            "checkpoint": res.checkpoint, "backend": str(state.backend)}))


if __name__ == "__main__":
    a = sys.argv[1:]
    main(a[0], int(a[1]), int(a[2]), int(a[3]) if len(a) > 3 else 0, a[4] if len(a) > 4 else "")
