"""What several sinks share: the metric catalogue, output files, addresses, points, consumer
selection, and the options they declare alike."""
