"""`python -m youxu.controller.cli`: the `youxu` command."""

from youxu.controller.cli import main

raise SystemExit(main())
