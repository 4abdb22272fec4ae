"""From a gateway's gRPC stream to committed rows: validate, deduplicate, write, acknowledge."""
