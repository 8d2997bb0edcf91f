"""A short example: sign up, log in and read yourself back, over gRPC.

    python clients/python/example.py localhost:5051 ada@example.com
"""

import sys

import grpc

import weft_proto  # noqa: F401  (generates the modules below)
from weft.user.v1 import user_pb2, user_service_pb2, user_service_pb2_grpc

address, email = sys.argv[1], sys.argv[2]
users = user_service_pb2_grpc.UserServiceStub(grpc.insecure_channel(address))
password = "correct horse battery 9"
users.SignUp(user_service_pb2.SignUpRequest(
    email=email, name="Ada", password=password, source=user_pb2.SIGNUP_SOURCE_API))
login = users.Login(user_service_pb2.LoginRequest(email=email, password=password))
me = users.GetUser(user_service_pb2.GetUserRequest(user_id=login.user_id),
                   metadata=[("authorization", f"Bearer {login.access_token}")])
print(me.user)
