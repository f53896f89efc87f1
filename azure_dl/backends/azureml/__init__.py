"""The Azure ML backend: the only code that imports azure.ai.ml and azure.identity, always inside functions.

- client.py  MLClient factory (credentials, retry policy), studio URLs, SDK errors -> redacted AzureDLError
- jobs.py    submit a rendered job YAML (loaded with azure.ai.ml.load_job), list/show/logs/cancel/download
- compute.py AmlCompute clusters (ensure, delete) and the per-family vCPU quota check
"""
