"""Runtime shared by the stage services: gRPC bootstrap, image codecs, config, metrics, logs, weights.

It imports no service and no orchestrator; the services and the orchestrator import it.
"""
