"""The local stand-in for API Gateway (REST, Lambda proxy integration, REQUEST authorizer).

moto's API Gateway cannot proxy HTTP to Lambda, so local mode does what API Gateway does for the
deployed template, in three parts with one job each:

- routes.py: the API as the template declares it (routes, authorizers, binary media types, gateway
  responses);
- gateway.py: API Gateway's handling of one request (size quotas, routing, the authorizer, the proxy
  event, the in-process invoke, the answer back in HTTP);
- server.py: the HTTP server in front (the front door), which frames requests and answers.
"""
from batchgate_local.apigw.gateway import Gateway
from batchgate_local.apigw.routes import ApiModel, media_type_matches
from batchgate_local.apigw.server import FrontDoor

__all__ = ["ApiModel", "FrontDoor", "Gateway", "media_type_matches"]
