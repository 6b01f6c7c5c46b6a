package event

import "testing"

func TestNames(t *testing.T) {
	action := func(a uint8) string {
		n, ok := RuleActionName(a)
		if !ok {
			return "?" + n
		}
		return n
	}
	cases := []struct{ got, want string }{
		{ProtocolName(0), "unspec"},
		{ProtocolName(4), "static"},
		{ProtocolName(12), "bird"},
		{ProtocolName(186), "bgp"},
		{ProtocolName(192), "eigrp"},
		{ProtocolName(77), "77"},
		{ProtocolName(255), "255"},
		{TableName(0), "unspec"},
		{TableName(100), "100"},
		{TableName(253), "default"},
		{TableName(254), "main"},
		{TableName(255), "local"},
		{TableName(1000), "1000"},
		{TableName(0xffffffff), "4294967295"},
		{string(AppendTable(nil, 254)), "main"},
		{string(AppendTable(nil, 1000)), "1000"},
		{ScopeName(0), "global"},
		{ScopeName(200), "site"},
		{ScopeName(253), "link"},
		{ScopeName(254), "host"},
		{ScopeName(255), "nowhere"},
		{ScopeName(7), "7"},
		{RouteTypeName(1), "unicast"},
		{RouteTypeName(6), "blackhole"},
		{RouteTypeName(11), "xresolve"},
		{RouteTypeName(12), "12"},
		{action(1), "lookup"},
		{action(2), "goto"},
		{action(3), "nop"},
		{action(8), "prohibit"},
		{action(4), "?4"},
		{ErrnoName(1), "EPERM"},
		{ErrnoName(2), "ENOENT"},
		{ErrnoName(3), "ESRCH"},
		{ErrnoName(13), "EACCES"},
		{ErrnoName(17), "EEXIST"},
		{ErrnoName(19), "ENODEV"},
		{ErrnoName(22), "EINVAL"},
		{ErrnoName(95), "EOPNOTSUPP"},
		{ErrnoName(101), "ENETUNREACH"},
		{ErrnoName(-17), "EEXIST"},
		{ErrnoName(4000), "E4000"},
		{ErrnoName(-4000), "E4000"},
		{string(AppendErrno(nil, 95)), "EOPNOTSUPP"},
		{string(AppendErrno(nil, 4000)), "E4000"},
	}
	for i, c := range cases {
		if c.got != c.want {
			t.Errorf("case %d: got %q, want %q", i, c.got, c.want)
		}
	}
	b := make([]byte, 0, 64)
	if a := testing.AllocsPerRun(100, func() {
		for i := range 256 {
			_ = ProtocolName(uint8(i))
			_ = TableName(uint32(i))
			_ = ScopeName(uint8(i))
			_ = RouteTypeName(uint8(i))
			_, _ = RuleActionName(uint8(i))
		}
		_ = ErrnoName(17)
		b = AppendTable(b[:0], 100000)
		b = AppendErrno(b[:0], 4000)
	}); a != 0 {
		t.Errorf("names: %v allocations, want 0", a)
	}
}
