"""``python -m c2d.cli``: the same as the ``c2d`` console script."""

from c2d.cli.main import main

raise SystemExit(main())
