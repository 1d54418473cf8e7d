"""``python -m benchmarks [--quick] [--only NAME]``."""

from ._runner import main

raise SystemExit(main())
