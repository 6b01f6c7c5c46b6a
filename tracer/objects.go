package tracer

// Objects are the tracer's BPF objects compiled into this build, for this
// architecture, by name: what `routetrace version` hashes, so that two
// builds can be told apart by what they load into the kernel.
func Objects() map[string][]byte {
	return map[string][]byte{"fib": _FibBytes, "nlcapture": _NlcaptureBytes, "nlorigin": _NloriginBytes}
}
