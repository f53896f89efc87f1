"""The local backend: runs the very command an Azure ML job would run, on this machine."""
