"""``python -m rewarddance.triton [VENV]``: provision the Triton venv and print where everything is (JSON)."""

from rewarddance.triton.provision import main

raise SystemExit(main())
