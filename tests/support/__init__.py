"""Fakes and helpers shared by the tests and the benchmarks, one module per concept.

paths (the repository), waiting (polling for a condition), net (ports, HTTP), procfs (a synthetic
/proc), frames (Frames and Snapshots made by hand), agents (wattprobe run as a subprocess), processes
(real children that spin or wait, argv chosen), powercap_tree (RAPL), workloads (loads whose CPU time
is known), attributed (what samplers give those workloads), faults (a torn tree), fake_qemu, run
(wattprobe run's test helpers), helm (the chart rendered), powerspy2, powerapi and prometheus (the
helpers of those tests). Test modules import from here, never from each other; so do the benchmarks.
"""
