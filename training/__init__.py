"""Training on a shop's own data: datasets, one trainer per module, evaluation (DESIGN.md, "Training").

Imports the networks from `services/<stage>/models/` and the runtime; never a servicer, the orchestrator or
grpc. The stage images do not install this package.
"""
