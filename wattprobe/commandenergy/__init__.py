"""The energy of one command or block (`wattprobe run`, `wattprobe.measure()`): meter.py tallies one
process tree's share of the Frames, result.py holds its figures and their JSON, carbon.py the grid's
carbon intensities, report.py the summary and the HTML report."""
