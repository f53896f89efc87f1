"""Measured, not assumed: each bench_*.py module measures one thing and writes benchmarks/results/<name>.json;
`python -m benchmarks.report` renders every result into docs/benchmarks.md. See benchmarks/README.md."""
