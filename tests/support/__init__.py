"""Fakes and helpers shared by the tests and the benchmarks, one module per concept.

paths (the repository), waiting (polling for a condition), net (ports, HTTP), procfs (a synthetic
/proc), frames (Frames and Snapshots made by hand), agents (wattprobe run as a subprocess), processes
(real children that spin or wait, argv chosen). Domain fakes stay beside them in tests/:
powercap_tree (RAPL), workloads (loads whose CPU time is known), attributed (what samplers give those
workloads), faults, fake_qemu, and the PowerSpy2, PowerAPI and Prometheus helpers.
"""
