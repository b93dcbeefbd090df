"""``python tests/triton_harness [VENV]``: provision the Triton venv and print where everything is (JSON)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from triton_harness.provision import main

raise SystemExit(main())
