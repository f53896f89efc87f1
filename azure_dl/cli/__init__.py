"""The `azure-dl` command line: one module per verb, each exposing `add_parser(subparsers)`."""
