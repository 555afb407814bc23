"""The pipeline put together: wiring.py builds sources, sampler and sinks from settings (the one place
that does), runner.py drives the sampler and writes every Frame to every sink."""
