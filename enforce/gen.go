package enforce

// The enforcer's BPF object, compiled by bpf2go. The outputs are committed
// so that `go build` needs no clang; `make generate` rebuilds them and
// `make check-generate` fails if they differ from the C.

//go:generate go tool bpf2go -tags linux -cc clang-19 -cflags "-O2 -g -Wall -Wpadded -Werror" -target amd64,arm64 -type rt_event -type enf_verdict -type enf_test_result -type enf_test_input -type enf_config -type enf_lpm4_key -type enf_lpm6_key -type enf_prefix -type enf_route_key -type enf_table_key -type enf_iface_key -type enf_netns_key -type enf_cgroup_key -type enf_comm_key -type enf_exe_key -type enf_rule_sel -type enf_nh_sel enforce ../bpf/enforce.bpf.c -- -I../bpf/include
