"""What several sinks share: the metric catalogue, delivery off the tick, output files, addresses,
points, consumer selection, and the options they declare alike."""
