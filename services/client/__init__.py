"""The Python SDK of segstream's API, under its name inside the services: the SDK is its
own distribution, ``segstream-client`` (clients/python, package ``segstream_client``);
see its README.

```
from services.client import Client

client = Client("http://127.0.0.1:8080", token="...")
camera = client.add("rtsp://user:pass@10.0.0.5/stream1", model="yolact_r50", fps=5, id="door")
print(client.health("door"))
for item in client.subscribe("door", classes=["person"]):
    print(item.id, [(i.label, i.score) for i in item.event.instances])
```
"""

from segstream_client import ApiError, AsyncClient, Client, Cursor, Received

__all__ = ["ApiError", "AsyncClient", "Client", "Cursor", "Received"]
