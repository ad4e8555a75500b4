"""The orchestrator: the HTTP API that accepts try-on jobs, runs the stages over gRPC and stores results in S3."""
