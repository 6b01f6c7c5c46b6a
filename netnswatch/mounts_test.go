package netnswatch

import (
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestParseMountinfo(t *testing.T) {
	text := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
44 43 0:4 net:[4026532177] /run/netns/expns rw shared:2 - nsfs nsfs rw
45 43 0:4 mnt:[4026532178] /run/mntns/x rw shared:3 - nsfs nsfs rw
46 30 0:4 net:[4026532300] /run/docker/netns/pod\040a\134b rw - nsfs nsfs rw
47 30 0:52 net:[4026532301] /tmp/not-nsfs rw - tmpfs tmpfs rw
48 30 0:4 net:[4026532302] /var/run/netns/two rw shared:9 master:4 - nsfs nsfs rw
49 30 0:4 net:[bad] /x rw - nsfs nsfs rw`
	got := parseMountinfo([]byte(text), nil)
	want := []nsMount{
		{4026532177, "/run/netns/expns"},
		{4026532300, `/run/docker/netns/pod a\b`},
		{4026532302, "/var/run/netns/two"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseNetLink(t *testing.T) {
	for link, want := range map[string]uint32{
		"net:[4026531840]": 4026531840,
		"net:[4294967295]": 4294967295,
		"net:[4294967296]": 0, // not a 32-bit inode
		"mnt:[4026531840]": 0,
		"net:[]":           0,
		"net:[12":          0,
		"net:[12a]":        0,
	} {
		got, ok := parseNetLink([]byte(link))
		if got != want || ok != (want != 0) {
			t.Errorf("parseNetLink(%q) = %d, %v; want %d", link, got, ok, want)
		}
	}
}

// The mount table is read again only when poll says it changed, and then
// shows the new mount.
func TestMountTableRereadsOnlyAfterAChange(t *testing.T) {
	requireRoot(t)
	m, err := openMountTable("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if read, err := m.refresh(); !read || err != nil {
		t.Fatalf("first refresh: read %v, err %v", read, err)
	}
	// Others on this machine may mount meanwhile: one quiet moment is enough.
	unchanged := false
	for range 20 {
		read, err := m.refresh()
		if err != nil {
			t.Fatal(err)
		}
		if !read {
			unchanged = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !unchanged {
		t.Error("the mount table was read again every time")
	}
	name := netnsNames("mt", 1)
	ino := addNamed(t, name...)[0]
	if read, err := m.refresh(); !read || err != nil {
		t.Fatalf("refresh after ip netns add: read %v, err %v", read, err)
	}
	want := nsMount{ino, "/run/netns/" + name[0]}
	if !slices.Contains(m.mounts, want) {
		t.Errorf("%+v not in %+v", want, m.mounts)
	}
}
