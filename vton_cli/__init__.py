"""The `vton` command and what it drives from a developer's machine or a CI runner: the typed HTTP client,
`vton up`'s process supervisor and S3 server, the demo, the benchmarks, the evaluation and the example photos.

No image installs this package: a stage image holds `vton/` (the runtime, the stubs, the weights command) and its
own service; the orchestrator image holds `vton/` and `orchestrator/`.
"""
