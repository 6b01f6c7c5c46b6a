package enforce

// Object is the enforcer's BPF object compiled into this build, for this
// architecture (see tracer.Objects).
func Object() []byte { return _EnforceBytes }
