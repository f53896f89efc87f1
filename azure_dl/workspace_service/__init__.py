"""A loopback Azure ML service that the unmodified azure-ai-ml and azure-identity packages talk to over HTTPS.

`azure-dl workspace serve --dir DIR` starts it (see `service.WorkspaceService`). It answers the REST routes the SDK
uses, with bodies shaped after the SDK's recorded traffic with the live service (Azure/azure-sdk-assets,
python/sdk/ml/azure-ai-ml/tests/recordings/), keeps its state under DIR, and writes DIR/connection.env for a
client shell. It is the other side of the wire: it never imports azure.ai.ml or azure.identity.
"""
