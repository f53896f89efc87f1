"""Allow `python -m azure_dl ...` as a synonym for the `azure-dl` console script."""

from azure_dl.cli.main import main

raise SystemExit(main())
