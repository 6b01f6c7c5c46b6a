package containerdtest

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"time"
)

// The images the harness imports: nothing can be pulled here, so both are
// built from busybox-static in Go, as one docker-archive tarball that
// shares one layer.
const (
	PauseImage    = "routetrace.test/pause:1"
	BusyboxImage  = "routetrace.test/busybox:1"
	imagePlatform = "amd64"
)

// applets get a symlink in /bin: what the tests run in containers.
var applets = []string{
	"sh", "ip", "sleep", "route", "cat", "echo", "ls", "ps", "true", "false",
	"grep", "kill", "ifconfig", "mount", "id", "wc", "head",
}

// findBusybox returns a statically linked busybox: the images have no libc.
func findBusybox() (string, error) {
	for _, p := range []string{"/usr/bin/busybox", "/bin/busybox"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		static := true
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			return p, nil
		}
	}
	return "", fmt.Errorf("no statically linked busybox in /usr/bin or /bin (apt-get install busybox-static, or make deps)")
}

// layerTar is a root filesystem: busybox, its applets and the directories
// runc mounts over.
func layerTar(busybox []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	dir := func(name string, mode int64) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: mtime})
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "run", "var", "root"} {
		dir(d, 0o755)
	}
	dir("tmp", 0o1777)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(busybox)), ModTime: mtime})
	tw.Write(busybox)
	for _, a := range applets {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + a, Linkname: "busybox", Mode: 0o777, ModTime: mtime})
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\n")
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644, Size: int64(len(passwd)), ModTime: mtime})
	tw.Write(passwd)
	group := []byte("root:x:0:\n")
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/group", Mode: 0o644, Size: int64(len(group)), ModTime: mtime})
	tw.Write(group)
	tw.Close()
	return buf.Bytes()
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// imageConfig is the image's config blob: its command and its one layer.
func imageConfig(layerDiffID string, cmd []string, labels map[string]string) []byte {
	cfg := map[string]any{
		"architecture": imagePlatform,
		"os":           "linux",
		"created":      "1970-01-01T00:00:00Z",
		"config": map[string]any{
			"Env":        []string{"PATH=/bin"},
			"Cmd":        cmd,
			"WorkingDir": "/",
			"Labels":     labels,
		},
		"rootfs": map[string]any{
			"type":     "layers",
			"diff_ids": []string{"sha256:" + layerDiffID},
		},
		"history": []map[string]any{{"created": "1970-01-01T00:00:00Z", "created_by": "routetrace containerdtest"}},
	}
	b, _ := json.Marshal(cfg)
	return b
}

// writeImageArchive writes a docker-archive tarball (docker save's format)
// holding PauseImage, whose command sleeps forever, and BusyboxImage, whose
// default command does too.
func writeImageArchive(path string) error {
	bbPath, err := findBusybox()
	if err != nil {
		return err
	}
	bb, err := os.ReadFile(bbPath)
	if err != nil {
		return fmt.Errorf("reading busybox: %w", err)
	}
	layer := layerTar(bb)
	layerID := digest(layer)
	forever := []string{"/bin/sleep", "infinity"}
	// The labels make the configs, and so the image IDs, differ.
	pauseCfg := imageConfig(layerID, forever, map[string]string{"routetrace.test/image": "pause"})
	bbCfg := imageConfig(layerID, forever, map[string]string{"routetrace.test/image": "busybox"})
	pauseID, bbID := digest(pauseCfg), digest(bbCfg)
	if pauseID == bbID {
		return fmt.Errorf("pause and busybox image configs are identical")
	}

	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	manifest, _ := json.Marshal([]entry{
		{Config: pauseID + ".json", RepoTags: []string{PauseImage}, Layers: []string{layerID + "/layer.tar"}},
		{Config: bbID + ".json", RepoTags: []string{BusyboxImage}, Layers: []string{layerID + "/layer.tar"}},
	})

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	file := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0)})
		tw.Write(b)
	}
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: layerID + "/", Mode: 0o755, ModTime: time.Unix(0, 0)})
	file(layerID+"/layer.tar", layer)
	file(pauseID+".json", pauseCfg)
	file(bbID+".json", bbCfg)
	file("manifest.json", manifest)
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
