"""agentline benchmarks: `make bench` runs every module's ``run()`` and stores the figures."""
