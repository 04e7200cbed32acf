"""How a message leaves: the transport protocol and errors, the SMTP implementation, the registry by provider name."""
