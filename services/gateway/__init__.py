"""The HTTP gateway: HTTP and webhooks in, the same NATS commands and queries out."""
