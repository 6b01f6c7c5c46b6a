// Package imagetest checks the container image the top-level Dockerfile
// builds: its metadata, and routetrace running inside it (probe, version,
// and a trace that must report a route added and deleted in a test
// namespace), as root with --privileged and as the image's non-root user
// with file capabilities only. `make image-test` builds the image and runs
// the test with ROUTETRACE_IMAGE set; without it the test skips.
package imagetest
