"""CNPG-I over grpclib: the .proto contract, its generated stubs, one module per service, the
unix-socket and mutual-TLS servers, and the process roles (operator, instance, restore)."""
