"""The programs: what composes probes, collector, detectors and response into the daemon,
`run`, `attach`, the control socket, streams, sinks, metrics, doctor and the CLI."""
