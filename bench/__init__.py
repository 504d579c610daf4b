"""Throughput, latency and footprint benchmark for X-Ray daemons (xray-trio or any compatible one).

Pieces, each runnable on its own:

* ``bench.loadgen``  - paced UDP sender of SDK-shaped segments (N processes for high rates)
* ``bench.endpoint`` - fake X-Ray HTTP endpoint counting documents per sequence number
* ``bench.run``      - starts endpoint and daemon(s), drives the rates, writes Markdown + JSON
"""
