"""The Azure ML backend: the only code that imports azure.ai.ml and azure.identity, always inside functions.

- client.py  MLClient factory (credentials, retry policy), studio URLs, SDK errors -> redacted AzureDLError
- jobs.py    submit a rendered job YAML (loaded with azure.ai.ml.load_job), list/show/logs/cancel/download
- data_refs.py  the azureml:NAME:VERSION data inputs of a job, checked with a GET before submission
- compute.py AmlCompute clusters (ensure, delete) and the per-family vCPU quota check
"""
