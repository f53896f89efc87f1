"""`python -m benchmarks.gpu_check`: see benchmarks/gpu_check/runner.py."""

from benchmarks.gpu_check.runner import main

raise SystemExit(main())
